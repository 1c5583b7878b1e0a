//! What one run did and what went wrong in it, summed over a session.

#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub runs: u64,
    pub items: u64,
    pub faults: u64,
    /// Items that did not settle exactly once (missing, or settled twice).
    pub lost: u64,
    /// Items that settled with the wrong value or an error of the wrong cause.
    pub wrong: u64,
    /// Things left behind after a run.
    pub leaked: u64,
    /// Runs that failed, with why.
    pub failures: Vec<String>,
}

impl Tally {
    pub fn add(&mut self, other: &Tally) {
        self.runs += other.runs;
        self.items += other.items;
        self.faults += other.faults;
        self.lost += other.lost;
        self.wrong += other.wrong;
        self.leaked += other.leaked;
        self.failures.extend(other.failures.iter().cloned());
    }

    pub fn lost(&mut self, why: String) {
        self.lost += 1;
        self.failures.push(format!("lost: {why}"));
    }

    pub fn wrong(&mut self, why: String) {
        self.wrong += 1;
        self.failures.push(format!("wrong: {why}"));
    }

    pub fn leaked(&mut self, why: String) {
        self.leaked += 1;
        self.failures.push(format!("leaked: {why}"));
    }

    /// The line the soak script reads.
    pub fn summary(&self, seed: u64, hung: u64) -> String {
        format!(
            "CHAOS SUMMARY seed={seed} runs={} items={} faults={} lost={} wrong={} hung={hung} leaked={} problems={}",
            self.runs,
            self.items,
            self.faults,
            self.lost,
            self.wrong,
            self.leaked,
            self.failures.len()
        )
    }
}
