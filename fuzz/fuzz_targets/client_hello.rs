#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| tether_proxy::tcp::hello::fuzz_client_hello(data));
