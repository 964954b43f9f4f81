#![no_std]
// This file exists so checksum-user can depend on this crate for rebuild tracking; the programs
// are in main.rs and are built for bpfel-unknown-none by checksum-user's build.rs.
