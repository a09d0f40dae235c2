/* Cortex-M core helpers: see cortexm.h. */
#include "cortexm.h"

static uint32_t wraps; /* SysTick wraps seen so far (COUNTFLAG), i.e. the high bits of the tick count */

void cm_systick_start(void)
{
    SYST_RVR = SYST_MASK; /* reload 2^24 - 1: the longest period */
    SYST_CVR = 0u;        /* any write clears the current value and COUNTFLAG */
    SYST_CSR = SYST_CSR_ENABLE | SYST_CSR_TICKINT | SYST_CSR_CLKSOURCE;
    wraps = 0u;
}

uint32_t cm_ticks(void)
{
    /* ticks = wraps * 2^24 + (2^24 - 1 - VAL): SysTick counts down and reloads, COUNTFLAG (cleared by reading
     * CSR) says whether it wrapped since the last read. Wrap detection must not depend on sampling times: a
     * modular difference of two samples loses a whole period whenever they are one period plus a little
     * apart, which is exactly what sampling on the wrap interrupt produces. A wrap between the two VAL reads
     * shows as v2 > v1 (the counter reloaded); its COUNTFLAG is then counted by this or the next pass. */
    uint32_t v1, v2;
    do {
        v1 = SYST_CVR & SYST_MASK;
        if (SYST_CSR & SYST_CSR_COUNTFLAG) {
            ++wraps;
        }
        v2 = SYST_CVR & SYST_MASK;
    } while (v2 > v1);
    return (wraps << 24) + (SYST_MASK - v2);
}

void cm_irq_enable(unsigned irq)
{
    NVIC_ISER(irq >> 5) = 1u << (irq & 31u);
}

void cm_irq_clear_pending(unsigned irq)
{
    NVIC_ICPR(irq >> 5) = 1u << (irq & 31u);
}

void cm_idle(void)
{
    __asm__ volatile("dsb\n\twfi" ::: "memory");
    if (SCB_ICSR & ICSR_PENDSTSET) {
        SCB_ICSR = ICSR_PENDSTCLR; /* the wrap woke us: clear it so the next WFI sleeps again */
    }
    (void)cm_ticks();
}

void cm_system_reset(void)
{
    __asm__ volatile("dsb" ::: "memory");
    SCB_AIRCR = AIRCR_VECTKEY | AIRCR_SYSRESETREQ;
    __asm__ volatile("dsb" ::: "memory");
    for (;;) {
        __asm__ volatile("nop");
    }
}
