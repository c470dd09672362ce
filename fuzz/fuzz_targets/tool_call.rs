//! The LLM's tool call: whatever text the model writes is read as a call to one of the candidates, and
//! its arguments are checked against that tool's typed arguments, without a panic.
#![no_main]
use dongcha::{agent, tools};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let candidates: Vec<&str> = tools::NAMES.to_vec();
    if let Ok((tool, args)) = agent::parse_call(text, &candidates) {
        assert!(candidates.contains(&tool.as_str()));
        let _ = tools::check_args(&tool, serde_json::Value::Object(args));
    }
    // The arguments alone, offered to every tool.
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(text) {
        for t in tools::NAMES {
            let _ = tools::check_args(t, v.clone());
        }
    }
});
