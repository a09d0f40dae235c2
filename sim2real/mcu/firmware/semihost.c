/* Semihosting exit: SYS_EXIT_EXTENDED (operation 0x20) with the reason ADP_Stopped_ApplicationExit (0x20026)
 * and a subcode = the status. QEMU (-semihosting-config enable=on,target=native) turns the subcode into its
 * process exit status. The call is "bkpt 0xAB" with r0 = operation and r1 = pointer to the argument block. */
#include "semihost.h"

#include <stdint.h>

#define SYS_EXIT_EXTENDED 0x20u
#define ADP_STOPPED_APPLICATION_EXIT 0x20026u

void semihost_exit(int status)
{
    volatile uint32_t block[2] = {ADP_STOPPED_APPLICATION_EXIT, (uint32_t)status};
    register uint32_t r0 __asm__("r0") = SYS_EXIT_EXTENDED;
    register volatile uint32_t *r1 __asm__("r1") = block;
    __asm__ volatile("bkpt 0xAB" : "+r"(r0) : "r"(r1) : "memory");
    /* Only reached when no semihosting host answered the call. */
    for (;;) {
        __asm__ volatile("wfi");
    }
}
