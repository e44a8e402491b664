#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tether_proxy::front::conn::fuzz_take(data));
