/* Board support interface: one board_<machine>.c per QEMU machine implements it. */
#ifndef BOARD_H
#define BOARD_H

#include <stdint.h>

extern const char board_name[]; /* QEMU machine name, reported in the INFO reply */

/* Clocks, UART (RX interrupt enabled in the peripheral and the NVIC, never taken) and the SysTick counter. */
void board_init(void);

/* SysTick input clock in Hz (the core clock): cm_ticks() counts at this rate. */
uint32_t board_tick_hz(void);

/* Blocking transmit of one byte. */
void board_uart_putc(uint8_t byte);

/* Block until every queued byte has left the transmitter (before a reset). */
void board_uart_flush(void);

/* Nonzero when a received byte is waiting. */
int board_uart_rx_ready(void);

/* Read the waiting byte and clear the RX interrupt flag in the peripheral and the NVIC pending bit. */
uint8_t board_uart_getc(void);

#endif
