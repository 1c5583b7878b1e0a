//! The command line of a `bench-<impl>` binary:
//! `<workload> [--chunksize N|default] [--n N] [--iters N]`.

/// The usage text of `bench-<impl>`.
pub fn usage(imp: Impl) -> String {
    format!(
        "usage: bench-{} <workload> [--chunksize N|default] [--n N] [--iters N] [--cross-cpu] [--sandbox WHAT] [--fork-server]
  workload: w1 w2 w3 w4 w5 w6 w7q w7p w8 w9 w10 w11 w12 w13 (../shared/bench/WORKLOADS.md),
            process-start (start a process, handshake, exit),
            outstanding (the parent's bytes per task submitted and not yet run),
            rt (raw 8-byte round trip), tput (raw throughput, 1 MiB writes)
  --cross-cpu: (w2, w7p, rt) the caller on one CPU and the other process on another
  --sandbox WHAT: (multiproc w2, w4) the pool's workers sandboxed: full (every preset, Landlock
            read-only /usr, a private network), or one part: seccomp, landlock, net
  --fork-server: (multiproc) the pool's workers are forked from a template process
  --shared-fork-server: (multiproc w4) the template is a ForkServer started before the clock
  the binaries: bench-multiproc, bench-procspawn, bench-raw (rt, tput), bench-rayon (w5),
            bench-cluster (w1, w3 through a local nats-server)",
        imp.name()
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impl {
    Multiproc,
    Procspawn,
    Raw,
    Rayon,
    Cluster,
}

impl Impl {
    pub fn name(self) -> &'static str {
        match self {
            Impl::Multiproc => "multiproc",
            Impl::Procspawn => "procspawn",
            Impl::Raw => "raw",
            Impl::Rayon => "rayon",
            Impl::Cluster => "cluster",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    W1,
    W2,
    W3,
    W4,
    W5,
    W6,
    W7q,
    W7p,
    W8,
    W9,
    W10,
    W11,
    W12,
    W13,
    /// The parent's memory per outstanding task.
    Outstanding,
    ProcessStart,
    RoundTrip,
    Throughput,
}

const WORKLOADS: [(&str, Workload); 18] = [
    ("w1", Workload::W1),
    ("w2", Workload::W2),
    ("w3", Workload::W3),
    ("w4", Workload::W4),
    ("w5", Workload::W5),
    ("w6", Workload::W6),
    ("w7q", Workload::W7q),
    ("w7p", Workload::W7p),
    ("w8", Workload::W8),
    ("w9", Workload::W9),
    ("w10", Workload::W10),
    ("w11", Workload::W11),
    ("w12", Workload::W12),
    ("w13", Workload::W13),
    ("outstanding", Workload::Outstanding),
    ("process-start", Workload::ProcessStart),
    ("rt", Workload::RoundTrip),
    ("tput", Workload::Throughput),
];

impl Workload {
    pub fn name(self) -> &'static str {
        WORKLOADS.iter().find(|(_, w)| *w == self).map(|(n, _)| *n).unwrap_or("?")
    }

    /// The size of the workload when `--n` is not given, as in WORKLOADS.md.
    pub fn default_n(self) -> usize {
        match self {
            Workload::W1 => 100_000,
            Workload::W2 => 5_000,
            Workload::W3 => 20_000,
            Workload::W4 => 1,
            Workload::W5 => 64,
            Workload::W6 => 200,
            Workload::W7q => 200_000,
            Workload::W7p => 10_000,
            Workload::W8 => 10_000,
            Workload::W9 => 20,
            Workload::W10 => 2_000,
            Workload::W11 => 200,
            Workload::W12 => 500,
            Workload::W13 => 8,
            Workload::Outstanding => 400_000,
            Workload::ProcessStart => 5,
            Workload::RoundTrip => 10_000,
            // MiB written
            Workload::Throughput => 2_048,
        }
    }
}

/// `--chunksize`: a number, or Python's default (`ceil(n / (4 × workers))`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Chunksize {
    Default,
    Fixed(usize),
}

impl Chunksize {
    /// The chunk size for `n` items on `workers` workers.
    pub fn resolve(self, n: usize, workers: usize) -> usize {
        match self {
            Chunksize::Fixed(c) => c.max(1),
            Chunksize::Default => n.div_ceil(4 * workers).max(1),
        }
    }

    pub fn label(self) -> String {
        match self {
            Chunksize::Default => "default".into(),
            Chunksize::Fixed(c) => c.to_string(),
        }
    }
}

pub struct Args {
    pub imp: Impl,
    pub workload: Workload,
    pub chunksize: Chunksize,
    pub n: usize,
    /// W5: LCG iterations per task.
    pub iters: u64,
    /// `--cross-cpu` (W2, W7p, rt): this thread on one CPU, the other process on another.
    pub cross_cpu: bool,
    /// `--sandbox WHAT` (multiproc W2, W4): the pool's workers run in a sandbox, all of it
    /// (`full`) or one part (`seccomp`, `landlock`, `net`).
    pub sandbox: Option<String>,
    /// `--fork-server` (multiproc): workers forked from a template process.
    pub fork_server: bool,
    /// `--shared-fork-server` (multiproc W4): the template is a `ForkServer` started
    /// before the clock starts, as in a program that already runs one.
    pub shared_fork_server: bool,
}

/// W5's per-task work for Rust (≈ 20 ms a task here).
pub const W5_RUST_ITERS: u64 = 12_000_000;

impl Args {
    /// Parses `<workload> [options]` for the implementation `imp`.
    pub fn parse(imp: Impl, argv: &[String]) -> Result<Args, String> {
        let [workload, rest @ ..] = argv else { return Err("a workload is required".into()) };
        let workload = WORKLOADS
            .iter()
            .find(|(n, _)| n == workload)
            .map(|(_, w)| *w)
            .ok_or_else(|| format!("unknown workload `{workload}`"))?;
        let mut args = Args {
            imp,
            workload,
            chunksize: Chunksize::Default,
            n: workload.default_n(),
            iters: W5_RUST_ITERS,
            cross_cpu: false,
            sandbox: None,
            fork_server: false,
            shared_fork_server: false,
        };
        let mut it = rest.iter();
        while let Some(flag) = it.next() {
            if flag == "--cross-cpu" {
                args.cross_cpu = true;
                continue;
            }
            if flag == "--fork-server" {
                args.fork_server = true;
                continue;
            }
            if flag == "--shared-fork-server" {
                (args.fork_server, args.shared_fork_server) = (true, true);
                continue;
            }
            let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
            let number = || value.parse::<u64>().map_err(|_| format!("{flag} wants a number, got `{value}`"));
            match flag.as_str() {
                "--chunksize" if value == "default" => args.chunksize = Chunksize::Default,
                "--chunksize" => args.chunksize = Chunksize::Fixed(number()? as usize),
                "--n" => args.n = number()? as usize,
                "--iters" => args.iters = number()?,
                "--sandbox" if ["full", "seccomp", "landlock", "net"].contains(&value.as_str()) => {
                    args.sandbox = Some(value.clone())
                }
                "--sandbox" => return Err(format!("--sandbox wants full, seccomp, landlock or net, got `{value}`")),
                other => return Err(format!("unknown option `{other}`")),
            }
        }
        Ok(args)
    }
}
