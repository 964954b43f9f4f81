#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| checksum_testkit::fuzzing::pcapng_round_trip(data));
