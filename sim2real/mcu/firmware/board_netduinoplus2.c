/* Board support for QEMU "netduinoplus2": an STM32F405RG (Cortex-M4F, 168 MHz; the Crazyflie 2.x MCU).
 *
 * USART1 at 0x40011000, global interrupt IRQ 37; QEMU routes the first -serial to it. QEMU models the core
 * clock as a fixed 168 MHz and does not model RCC, so no PLL setup is done here (on silicon, the clock tree
 * must be brought to 168 MHz with APB2 = 84 MHz before BRR below is right). The RCC enable and GPIO alternate
 * function writes are what silicon needs and are ignored by QEMU. QEMU's USART drops bytes that arrive while
 * UE/RE are off, so the UART is enabled first thing in board_init(). */
#include "board.h"
#include "cortexm.h"

#define CPU_HZ 168000000u
#define APB2_HZ 84000000u
#define BAUD 115200u

#define RCC_BASE 0x40023800u
#define RCC_AHB1ENR REG32(RCC_BASE + 0x30u)
#define RCC_APB2ENR REG32(RCC_BASE + 0x44u)
#define RCC_AHB1ENR_GPIOAEN (1u << 0)
#define RCC_APB2ENR_USART1EN (1u << 4)

#define GPIOA_BASE 0x40020000u
#define GPIOA_MODER REG32(GPIOA_BASE + 0x00u)
#define GPIOA_AFRH REG32(GPIOA_BASE + 0x24u)

#define USART1_BASE 0x40011000u
#define USART_SR REG32(USART1_BASE + 0x00u)
#define USART_DR REG32(USART1_BASE + 0x04u)
#define USART_BRR REG32(USART1_BASE + 0x08u)
#define USART_CR1 REG32(USART1_BASE + 0x0Cu)
#define SR_RXNE (1u << 5)
#define SR_TC (1u << 6)
#define SR_TXE (1u << 7)
#define CR1_RE (1u << 2)
#define CR1_TE (1u << 3)
#define CR1_RXNEIE (1u << 5)
#define CR1_UE (1u << 13)
#define USART1_IRQ 37u

const char board_name[] = "netduinoplus2";

void board_init(void)
{
    RCC_AHB1ENR |= RCC_AHB1ENR_GPIOAEN;
    RCC_APB2ENR |= RCC_APB2ENR_USART1EN;
    /* PA9 = USART1_TX, PA10 = USART1_RX: alternate function 7. */
    GPIOA_MODER = (GPIOA_MODER & ~(0xFu << 18)) | (0xAu << 18);
    GPIOA_AFRH = (GPIOA_AFRH & ~(0xFFu << 4)) | (0x77u << 4);
    USART_BRR = (APB2_HZ + BAUD / 2u) / BAUD; /* 16x oversampling: mantissa.fraction = f / baud */
    USART_CR1 = CR1_UE | CR1_TE | CR1_RE | CR1_RXNEIE;
    cm_irq_clear_pending(USART1_IRQ);
    cm_irq_enable(USART1_IRQ);
    cm_systick_start();
}

uint32_t board_tick_hz(void)
{
    return CPU_HZ;
}

void board_uart_putc(uint8_t byte)
{
    while (!(USART_SR & SR_TXE)) {
    }
    USART_DR = byte;
}

void board_uart_flush(void)
{
    while (!(USART_SR & SR_TC)) {
    }
}

int board_uart_rx_ready(void)
{
    return (USART_SR & SR_RXNE) != 0u;
}

uint8_t board_uart_getc(void)
{
    uint8_t byte = (uint8_t)USART_DR; /* reading DR clears RXNE, which drops the interrupt line */
    cm_irq_clear_pending(USART1_IRQ);
    return byte;
}
