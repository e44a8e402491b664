#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tether_proxy::proxy_protocol::fuzz_header(data));
