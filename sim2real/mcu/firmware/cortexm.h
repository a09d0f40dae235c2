/* Cortex-M core peripherals shared by every board: SysTick tick counter, NVIC pending/enable bits, WFI sleep
 * and system reset. Interrupts stay globally masked (PRIMASK, "cpsid i") for the whole run: a pending
 * interrupt still wakes WFI, so the firmware sleeps until a UART byte arrives without ever running an ISR. */
#ifndef CORTEXM_H
#define CORTEXM_H

#include <stdint.h>

#define REG32(addr) (*(volatile uint32_t *)(addr))

/* System control block. */
#define SCB_ICSR REG32(0xE000ED04u)
#define SCB_AIRCR REG32(0xE000ED0Cu)
#define SCB_CPACR REG32(0xE000ED88u)
#define ICSR_PENDSTSET (1u << 26)
#define ICSR_PENDSTCLR (1u << 25)
#define AIRCR_VECTKEY (0x05FAu << 16)
#define AIRCR_SYSRESETREQ (1u << 2)

/* SysTick: 24-bit down counter clocked from the core clock (CLKSOURCE = 1). */
#define SYST_CSR REG32(0xE000E010u)
#define SYST_RVR REG32(0xE000E014u)
#define SYST_CVR REG32(0xE000E018u)
#define SYST_CSR_ENABLE (1u << 0)
#define SYST_CSR_TICKINT (1u << 1)
#define SYST_CSR_CLKSOURCE (1u << 2)
#define SYST_CSR_COUNTFLAG (1u << 16)
#define SYST_MASK 0x00FFFFFFu

/* NVIC set-enable / clear-pending banks, 32 interrupts per word. */
#define NVIC_ISER(n) REG32(0xE000E100u + 4u * (n))
#define NVIC_ICPR(n) REG32(0xE000E280u + 4u * (n))

/* Start SysTick free-running over the full 24-bit range with its wrap exception pending-able (it is masked by
 * PRIMASK, but wakes WFI so an idle core still samples the counter at least once per wrap). */
void cm_systick_start(void);

/* 32-bit tick counter extended in software from SysTick's wrap flag. Exact (modulo 2^32) as long as it is
 * sampled at least once per 2^24 ticks (0.67 s at 25 MHz, 0.1 s at 168 MHz); cm_idle() guarantees that while
 * waiting, because the wrap exception wakes WFI. */
uint32_t cm_ticks(void);

/* Enable an external interrupt in the NVIC (it never runs: PRIMASK is set; it only wakes WFI). */
void cm_irq_enable(unsigned irq);
void cm_irq_clear_pending(unsigned irq);

/* Sleep until any exception is pending (UART RX or a SysTick wrap), then fold the SysTick wrap in. */
void cm_idle(void);

/* Request a system reset through AIRCR.SYSRESETREQ; does not return. */
void cm_system_reset(void) __attribute__((noreturn));

#endif
