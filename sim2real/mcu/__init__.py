"""Layer 5, microcontrollers: C code generation, firmware build, QEMU, the serial protocol, hardware in the loop."""
