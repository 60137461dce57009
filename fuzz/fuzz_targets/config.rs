//! The config file: TOML, then the checks of presets, limits, routing and webhooks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nommer_core::config::{check_key_template, Config, ConfigError};

fuzz_target!(|text: &str| {
    match Config::parse(text, "fuzz.toml") {
        Ok(c) => assert!(check_key_template(&c.key_template).is_ok()),
        Err(ConfigError::Invalid { line, .. }) => assert!(line >= 1),
        Err(_) => {}
    }
});
