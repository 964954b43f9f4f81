#![no_std]
// This file exists so checksum-testkit can depend on this crate for rebuild tracking; the program
// is in main.rs and is built for bpfel-unknown-none by checksum-testkit's build.rs.
