/* ARM semihosting: the only channel back to the host that needs no peripheral (QEMU, or a debug probe).
 *
 * semihost_exit() ends the emulation with a status byte that becomes QEMU's own exit status, so a firmware
 * self-test needs nothing but the process exit code. On silicon the call needs an attached debug probe with
 * semihosting enabled: without one, the BKPT escalates to a HardFault (and, from the fault handler, to
 * lockup), so QUIT and the self-test exit are for QEMU or a debugger. If a host ignores the call,
 * semihost_exit() sleeps forever. */
#ifndef SEMIHOST_H
#define SEMIHOST_H

void semihost_exit(int status) __attribute__((noreturn));

#endif
