//! Any prompt text through the inline-parameter language: never panics; it starts 1 to
//! MAX_JOBS_PER_PROMPT jobs; no job's prompt holds a flag the parser would take; and an
//! accepted prompt, parsed again, gives the same prompt with no flags.
#![no_main]

use indexmap::IndexMap;
use libfuzzer_sys::fuzz_target;
use validation::inline::{parse_prompt, split_flags, MAX_JOBS_PER_PROMPT};
use validation::{ParamKind, ParamRule};

fn rules() -> IndexMap<String, ParamRule> {
    let mut r = IndexMap::new();
    r.insert("prompt".into(), ParamRule::new(ParamKind::String));
    r.insert("negative".into(), ParamRule::new(ParamKind::String));
    r.insert("seed".into(), ParamRule::new(ParamKind::Seed));
    r.insert("steps".into(), ParamRule::new(ParamKind::Int));
    r.insert("cfg".into(), ParamRule::new(ParamKind::Float));
    r.insert("hires".into(), ParamRule::new(ParamKind::Bool));
    r.insert("sampler".into(), ParamRule::new(ParamKind::Choice));
    r
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(jobs) = parse_prompt(text, &rules()) else { return };
    assert!((1..=MAX_JOBS_PER_PROMPT).contains(&jobs.len()));
    for job in &jobs {
        let again = split_flags(&job.prompt);
        assert!(again.flags.is_empty(), "{:?} still has flags", job.prompt);
        assert_eq!(again.prompt, job.prompt);
    }
});
