/* Board support for QEMU "mps2-an386": ARM MPS2 FPGA image AN386, a Cortex-M4F at 25 MHz.
 *
 * UART0 is an ARM CMSDK APB UART at 0x40004000; its RX interrupt is external IRQ 0. QEMU's model holds
 * incoming bytes back until RX is enabled and the 1-byte buffer is empty, so nothing is lost while the core
 * computes. QEMU ignores the baud divider but refuses to run the UART with BAUDDIV < 16, so program the real
 * value (25 MHz / 115200). */
#include "board.h"
#include "cortexm.h"

#define CPU_HZ 25000000u
#define BAUD 115200u

#define UART0_BASE 0x40004000u
#define UART_DATA REG32(UART0_BASE + 0x00u)
#define UART_STATE REG32(UART0_BASE + 0x04u)
#define UART_CTRL REG32(UART0_BASE + 0x08u)
#define UART_INTCLEAR REG32(UART0_BASE + 0x0Cu)
#define UART_BAUDDIV REG32(UART0_BASE + 0x10u)
#define STATE_TX_FULL (1u << 0)
#define STATE_RX_FULL (1u << 1)
#define CTRL_TX_EN (1u << 0)
#define CTRL_RX_EN (1u << 1)
#define CTRL_RX_INT_EN (1u << 3)
#define INT_RX (1u << 1)
#define UART0_RX_IRQ 0u

const char board_name[] = "mps2-an386";

void board_init(void)
{
    UART_BAUDDIV = CPU_HZ / BAUD;
    UART_CTRL = CTRL_TX_EN | CTRL_RX_EN | CTRL_RX_INT_EN;
    UART_INTCLEAR = INT_RX;
    cm_irq_clear_pending(UART0_RX_IRQ);
    cm_irq_enable(UART0_RX_IRQ);
    cm_systick_start();
}

uint32_t board_tick_hz(void)
{
    return CPU_HZ;
}

void board_uart_putc(uint8_t byte)
{
    while (UART_STATE & STATE_TX_FULL) {
    }
    UART_DATA = byte;
}

void board_uart_flush(void)
{
    /* The CMSDK UART has no "shift register empty" flag: wait for the holding register, then one character
     * time (10 bits) for the shift register to drain. */
    while (UART_STATE & STATE_TX_FULL) {
    }
    uint32_t start = cm_ticks();
    while ((uint32_t)(cm_ticks() - start) < 10u * (CPU_HZ / BAUD)) {
    }
}

int board_uart_rx_ready(void)
{
    return (UART_STATE & STATE_RX_FULL) != 0u;
}

uint8_t board_uart_getc(void)
{
    uint8_t byte = (uint8_t)UART_DATA; /* reading DATA clears RX_FULL */
    UART_INTCLEAR = INT_RX;            /* the RX interrupt status is latched until cleared */
    cm_irq_clear_pending(UART0_RX_IRQ);
    return byte;
}
