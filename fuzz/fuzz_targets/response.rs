#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tether_proxy::http1::response::fuzz_response(data));
