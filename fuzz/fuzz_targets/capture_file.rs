#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| checksum_user::fuzzing::capture_file(data));
