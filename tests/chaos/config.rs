//! What a chaos session runs, from the environment, and the faults known to break today.

use std::time::Duration;

/// Faults and checks that fail on today's main (issue 14), left out unless
/// `MULTIPROC_CHAOS_ALL=1`. Each is being fixed; remove its name here when its fix lands.
///
/// None today: every finding the suite was written against is fixed.
pub const KNOWN_BROKEN: &[&str] = &[];

/// Faults that need something the default run should not ask for.
const OPT_IN: &[(&str, &str)] = &[];

#[derive(Debug, Clone)]
pub struct Config {
    /// The session's seed: every run's schedule derives from it.
    pub seed: u64,
    /// Stop after this many runs...
    pub runs: u64,
    /// ... or after this long, whichever comes first.
    pub seconds: Option<u64>,
    /// Run only run number `only_run` of the session (to replay one failure).
    pub only_run: Option<u64>,
    /// Include the known-broken faults and checks.
    pub all: bool,
    /// Only these faults and run kinds (`MULTIPROC_CHAOS_FAULTS=sigkill,pipe_kill`).
    pub only: Option<Vec<String>>,
    /// Go on after a failed run and report every one at the end (for the soak).
    pub keep_going: bool,
    /// A run taking longer than this is a hang.
    pub run_limit: Duration,
}

fn env_u64(name: &str) -> Option<u64> {
    let v = std::env::var(name).ok()?;
    Some(v.trim().parse().unwrap_or_else(|_| panic!("{name}={v} is not a number")))
}

fn env_flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.is_empty() && v != "0")
}

impl Config {
    pub fn from_env() -> Config {
        let seed = env_u64("MULTIPROC_CHAOS_SEED").unwrap_or_else(fresh_seed);
        let seconds = env_u64("MULTIPROC_CHAOS_SECONDS");
        // With a time budget the run count is only a backstop.
        let runs = env_u64("MULTIPROC_CHAOS_RUNS").unwrap_or(if seconds.is_some() { u64::MAX } else { 30 });
        let only = std::env::var("MULTIPROC_CHAOS_FAULTS")
            .ok()
            .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect());
        Config {
            seed,
            runs,
            seconds,
            only_run: env_u64("MULTIPROC_CHAOS_ONLY_RUN"),
            all: env_flag("MULTIPROC_CHAOS_ALL"),
            only,
            keep_going: env_flag("MULTIPROC_CHAOS_KEEP_GOING"),
            run_limit: Duration::from_secs(env_u64("MULTIPROC_CHAOS_RUN_LIMIT").unwrap_or(90)),
        }
    }

    /// Whether the fault, run kind or check `name` is part of this session.
    pub fn enabled(&self, name: &str) -> bool {
        if OPT_IN.iter().any(|(n, var)| *n == name && !env_flag(var)) {
            return false;
        }
        if !self.all && KNOWN_BROKEN.contains(&name) {
            return false;
        }
        self.only.as_ref().is_none_or(|only| only.iter().any(|o| o == name))
    }

    /// Whether the check `name` (not a fault: nothing to filter on) is made.
    pub fn checks(&self, name: &str) -> bool {
        self.all || !KNOWN_BROKEN.contains(&name)
    }
}

fn fresh_seed() -> u64 {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    t.as_nanos() as u64 ^ (u64::from(std::process::id()) << 32)
}
