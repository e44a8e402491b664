#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tether_proxy::route::path::fuzz_normalize(data));
