/* Startup shared by every board: vector table, Reset_Handler and fault handlers.
 *
 * Reset_Handler masks interrupts (they are never taken; pending ones only wake WFI), enables the FPU, copies
 * .data from flash, zeroes .bss, runs main() and hands main's return value to the semihosting exit, which
 * becomes QEMU's exit status. Every other exception (HardFault, MemManage, BusFault, UsageFault, a stray
 * interrupt) ends the run with status 3. */
#include <stdint.h>

#include "cortexm.h"
#include "semihost.h"

#define FAULT_EXIT_STATUS 3
#define NUM_IRQS 96 /* STM32F405 has 82; the rest are unused */

/* Linker-script symbols (link_<board>.ld). */
extern uint32_t _sidata, _sdata, _edata, _sbss, _ebss, _estack;

int main(void);
void Reset_Handler(void) __attribute__((noreturn));
void Fault_Handler(void) __attribute__((noreturn));

/* GCC would turn the copy/zero loops below into memcpy/memset calls; keep them as plain loops. */
__attribute__((optimize("no-tree-loop-distribute-patterns"))) void Reset_Handler(void)
{
    __asm__ volatile("cpsid i" ::: "memory");
    SCB_CPACR |= 0xFu << 20; /* CP10 + CP11 full access: the FPU */
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    for (uint32_t *src = &_sidata, *dst = &_sdata; dst < &_edata;) {
        *dst++ = *src++;
    }
    for (uint32_t *dst = &_sbss; dst < &_ebss;) {
        *dst++ = 0u;
    }
    semihost_exit(main());
}

void Fault_Handler(void)
{
    semihost_exit(FAULT_EXIT_STATUS);
}

typedef void (*vector_t)(void);

/* Word 0 is the initial stack pointer, word 1 the reset vector, then the 14 other system exceptions and the
 * external interrupts. */
__attribute__((section(".isr_vector"), used)) const vector_t vector_table[16 + NUM_IRQS] = {
    (vector_t)(uintptr_t)&_estack,
    Reset_Handler,
    [2 ... 15] = Fault_Handler,
    [16 ... 16 + NUM_IRQS - 1] = Fault_Handler,
};
