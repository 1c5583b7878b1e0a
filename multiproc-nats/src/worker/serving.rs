//! The worker's loop: a [`Session`] holds what is in the worker's hands, and each event
//! (a task arrived, a slot finished, a result delivered, a heartbeat tick, the broker
//! lost or back, a stop) is one method on it.
//!
//! - While a task runs (and while its result is being delivered) it sends an
//!   in-progress ack every third of the queue's `ack_wait`, so the broker hands the task
//!   to another worker only when this one has vanished.
//! - It acks a task only once its result is stored in the pool's result stream, where
//!   the client takes it (at once, or when it is back from a disconnection): a worker
//!   that dies at any point loses nothing, and the client drops the duplicate a
//!   redelivery may cause.
//! - While a task of many items runs, the results of its finished items are stored in
//!   batches as they come, each noted once stored (see [`progress`](super::progress));
//!   a redelivered task reads its note first and runs only the items without a result.
//! - A refused task (see [`admission`](super::admission)) is terminated (`+TERM`) once
//!   the reason is stored for its client, so that it is not handed out again.
//! - A task whose items are in the pool's object store runs once they are read (in the
//!   background: the loop goes on meanwhile); items that are gone (the task settled:
//!   this is a redelivery) refuse it, and items the broker cannot give now put it back
//!   on the queue. Under a cap on the bytes of such arguments held at once, the read
//!   waits its turn for room first (see [`room`](super::room)).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::admission::{Admission, admit, other_builds_notice};
use super::leftovers;
use super::progress::{self, ItemSet, Pending, flush_every};
use super::pulls::{Arrival, PullBook, arrival, free_slots, progress_period};
use super::results::{Delivery, Part, ResultOf, deliver, refusal, result_parts};
use super::room::{ArgsRoom, Reserved};
use super::settings::WorkerConfig;
use super::slots::{Finished, Job, SlotEvent, Slots};
use super::stats::StatsCell;
use crate::broker;
use crate::envelope::{ItemResults, RanOn, TaskHead, host_name};
use crate::error::ClusterError;
use crate::objects::{self, Fetch, Objects};
use crate::runner::TaskRunner;
use crate::status::{LiveWorker, unix_ms};

/// How long a client without a lease has to answer before its task is dropped.
const PROBE_PATIENCE: Duration = Duration::from_secs(1);

/// How long a client seen alive is trusted to be without asking its lease again.
const LEASE_TRUST: Duration = Duration::from_secs(1);

/// How long to wait before asking again when the broker refused a pull request.
const PULL_RETRY: Duration = Duration::from_millis(250);

/// A worker connected to its pool's queue.
pub(super) struct Worker {
    config: WorkerConfig,
    client: async_nats::Client,
    js: jetstream::Context,
    stream: jetstream::stream::Stream,
    consumer: jetstream::consumer::PullConsumer,
    leases: jetstream::stream::Stream,
    /// Which items of running tasks have their results stored (see `progress`).
    progress: jetstream::stream::Stream,
    objects: Objects,
    runner: Arc<dyn TaskRunner>,
    stats: Arc<StatsCell>,
    events: mpsc::UnboundedReceiver<async_nats::Event>,
    me: RanOn,
    fingerprint: u64,
}

impl Worker {
    /// Connects, and finds (or creates) the queue.
    pub(super) async fn connect(
        config: WorkerConfig,
        runner: Arc<dyn TaskRunner>,
        stats: Arc<StatsCell>,
    ) -> Result<Worker, ClusterError> {
        let me = RanOn { host: host_name(), worker_pid: std::process::id(), process_pid: None };
        let (event_tx, events) = mpsc::unbounded_channel();
        let client = broker::connect(&config.broker, format!("multiproc-nats worker {me}"), move |e| {
            let _ = event_tx.send(e);
        })
        .await?;
        let js = jetstream::new(client.clone());
        let mut config = config;
        let clustered = client.server_info().cluster.is_some();
        let stream = broker::task_stream(&js, &mut config.queue, clustered).await?;
        let fingerprint = multiproc::remote::fingerprint();
        let consumer = broker::worker_consumer(&stream, &config.queue, fingerprint).await?;
        let leases = broker::lease_stream(&js, &config.queue).await?;
        broker::result_stream(&js, &config.queue).await?;
        let progress = broker::progress_stream(&js, &config.queue).await?;
        let objects = objects::bucket(&js, &config.queue, client.server_info().max_payload).await?;
        // Where its heartbeats go, for the pool's status.
        broker::presence_stream(&js, &config.queue).await?;
        Ok(Worker {
            config,
            client,
            js,
            stream,
            consumer,
            leases,
            progress,
            objects,
            runner,
            stats,
            events,
            me,
            fingerprint,
        })
    }

    /// Serves the queue until `stop` says so (then finishes what it holds) or the
    /// connection ends for good.
    pub(super) async fn run(self, stop: watch::Receiver<bool>) -> Result<(), ClusterError> {
        let inbox = self.client.new_inbox();
        let pulls = self
            .client
            .subscribe(format!("{inbox}.*"))
            .await
            .map_err(|e| ClusterError::Setup { what: "a subscription".into(), message: e.to_string() })?;
        let slot_count = self.runner.slots().max(1);
        let (slots, finished) = Slots::start(slot_count, &self.runner)?;
        let isolation = self.runner.isolation();
        let flush_every = flush_every(self.consumer.cached_info().config.ack_wait);
        let room = ArgsRoom::new(self.config.max_args_bytes);
        let session = Session {
            worker: self,
            slot_count,
            inbox,
            slots,
            book: PullBook::default(),
            held: HashMap::new(),
            running: HashMap::new(),
            deliveries: JoinSet::new(),
            fetches: JoinSet::new(),
            next_key: 0,
            stopping: false,
            disconnected: false,
            pull_again_at: Instant::now(),
            notice: None,
            clients: Clients::default(),
            isolation,
            flush_every,
            room,
        };
        session.serve(pulls, finished, stop).await
    }
}

/// One task message in this worker's hands, until it is acked or terminated.
struct Held {
    msg: jetstream::Message,
    /// Terminate rather than ack once the client has heard (a refused task).
    refused: bool,
}

/// A running task: where its results go, and how far they got.
struct Running {
    task_id: u64,
    reply_to: String,
    delivery: u64,
    items: u32,
    /// Outcomes of finished items not yet sent.
    pending: Arc<Mutex<Pending>>,
    /// The items whose results are stored: before this delivery, or by its batches.
    stored: ItemSet,
    /// Whether a batch is on its way (one at a time, so that notes follow each other).
    sending: bool,
    /// Set once its slot is done, with the pid of the process that ran it all.
    ended: Option<Option<u32>>,
    /// Why a batch could not be stored: at its end, the task goes back to the queue.
    failed: Option<String>,
    /// The room its arguments take under the worker's cap, given back with it.
    _room: Reserved,
}

impl Running {
    fn new(head: &TaskHead, delivery: u64) -> Running {
        Running {
            task_id: head.task_id,
            reply_to: head.reply_to.clone(),
            delivery,
            items: head.items,
            pending: Arc::default(),
            stored: ItemSet::default(),
            sending: false,
            ended: None,
            failed: None,
            _room: Reserved::default(),
        }
    }

    /// The client's id: the last word of its subject.
    fn client(&self) -> &str {
        self.reply_to.rsplit('.').next().unwrap_or(&self.reply_to)
    }
}

/// Which stage of a task a delivery stored.
enum Stage {
    /// A batch of a running task's results; the items stored once it is.
    Batch(ItemSet),
    /// Its last results (or a refusal): the task is acked (or terminated) once stored,
    /// then its progress note, if it has one (the subject), is removed.
    Final(Option<String>),
}

/// A task ready to run once the background read of its items (from the object store)
/// and of its progress (a redelivery's) is done.
struct Prepared {
    key: u64,
    head: TaskHead,
    payload: bytes::Bytes,
    args_at: usize,
    /// The items read from the object store; `None` when they are in the message.
    fetched: Option<Fetch>,
    /// The items whose results are stored already.
    stored: ItemSet,
    /// The room its arguments read from the object store take (see [`super::room`]).
    room: Reserved,
}

/// What the worker's loop holds between events.
struct Session {
    worker: Worker,
    slot_count: usize,
    inbox: String,
    slots: Slots,
    book: PullBook,
    /// Every message not yet acked or terminated, by key.
    held: HashMap<u64, Held>,
    /// The messages a slot runs, by key.
    running: HashMap<u64, Running>,
    deliveries: JoinSet<(u64, Stage, Delivery)>,
    /// Tasks whose items are being read from the object store, or whose progress is.
    fetches: JoinSet<Prepared>,
    next_key: u64,
    stopping: bool,
    disconnected: bool,
    pull_again_at: Instant,
    /// What this worker last said about tasks of other builds waiting.
    notice: Option<String>,
    clients: Clients,
    /// What isolates the tasks' processes, as the runner said at the start (heartbeats
    /// carry it).
    isolation: Option<String>,
    /// How long a finished item's result may wait for others to go with it.
    flush_every: Duration,
    /// The room for large arguments held at once (see [`super::room`]).
    room: ArgsRoom,
}

/// What this worker knows of clients' leases.
#[derive(Default)]
struct Clients {
    /// Clients seen alive, until when that is trusted without asking again.
    alive: HashMap<String, Instant>,
    /// Clients found gone (said once in the log).
    gone: std::collections::HashSet<String>,
    /// Clients found gone, until when that is trusted without asking again: the rest of
    /// a dead client's tasks are dropped without a look at the broker each.
    dead: HashMap<String, Instant>,
}

impl Session {
    async fn serve(
        mut self,
        mut pulls: async_nats::Subscriber,
        mut finished: Finished,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), ClusterError> {
        let ack_wait = self.worker.consumer.cached_info().config.ack_wait;
        let mut progress = tokio::time::interval(progress_period(ack_wait));
        progress.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batches = tokio::time::interval(self.flush_every / 2);
        batches.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.pull().await;
            if self.stopping && self.running.is_empty() && self.held.is_empty() {
                break;
            }
            tokio::select! {
                msg = pulls.next() => match msg {
                    Some(msg) => self.on_arrival(msg).await,
                    None => break,
                },
                done = finished.recv() => match done {
                    Some((key, event)) => self.on_slot_event(key, event),
                    None => break,
                },
                Some(joined) = self.deliveries.join_next(), if !self.deliveries.is_empty() => {
                    if let Ok((key, stage, delivery)) = joined {
                        self.on_delivered(key, stage, delivery).await;
                    }
                }
                Some(joined) = self.fetches.join_next(), if !self.fetches.is_empty() => {
                    if let Ok(prepared) = joined {
                        self.on_fetched(prepared).await;
                    }
                }
                _ = batches.tick() => self.on_batch_tick(),
                _ = progress.tick() => self.on_heartbeat().await,
                event = self.worker.events.recv() => self.on_broker_event(event),
                _ = stop.changed(), if !self.stopping => self.on_stop().await,
                _ = tokio::time::sleep_until(self.pull_again_at.into()), if Instant::now() < self.pull_again_at => {}
            }
        }
        self.shut_down().await;
        Ok(())
    }

    fn log(&self, msg: impl std::fmt::Display) {
        eprintln!("multiproc-nats worker {}: {msg}", self.worker.me);
    }

    /// Asks the broker for as many tasks as there are free slots, unless stopping or
    /// waiting after a refused request.
    async fn pull(&mut self) {
        let wanted = self.worker.runner.wanted();
        let free = free_slots(wanted, self.slot_count, self.running.len(), self.book.awaiting());
        if self.stopping || free == 0 || Instant::now() < self.pull_again_at {
            return;
        }
        let n = self.book.next_number();
        let expiry = self.worker.config.pull_expiry;
        let batch = jetstream::consumer::pull::BatchConfig { batch: free, expires: Some(expiry), ..Default::default() };
        match self.worker.consumer.request_batch(batch, format!("{}.{n}", self.inbox).into()).await {
            Ok(()) => self.book.opened(n, free, Instant::now(), expiry),
            Err(_) => self.pull_again_at = Instant::now() + PULL_RETRY,
        }
    }

    /// A message on the pull inbox: a task, or the end of a request.
    async fn on_arrival(&mut self, msg: async_nats::Message) {
        match arrival(msg.status, msg.subject.as_str()) {
            Arrival::Heartbeat | Arrival::RequestEnded(None) => return,
            Arrival::RequestEnded(Some(n)) => return self.book.ended(n),
            Arrival::Task => {}
        }
        self.book.filled_one();
        let msg = jetstream::Message { message: msg, context: self.worker.js.clone() };
        if self.stopping || self.running.len() >= self.slot_count {
            // More than asked for (a request from before a reconnection): let another
            // worker have it now.
            let _ = msg.ack_with(AckKind::Nak(None)).await;
            return;
        }
        self.next_key += 1;
        let delivery = msg.info().map(|i| i.delivered.max(1) as u64).unwrap_or(1);
        self.worker.stats.update(|s| {
            s.received += 1;
            if delivery > 1 {
                s.redelivered += 1;
            }
        });
        self.admit(self.next_key, msg, delivery).await;
    }

    /// Runs a task that arrived, or refuses it.
    async fn admit(&mut self, key: u64, msg: jetstream::Message, delivery: u64) {
        match admit(&msg.payload, self.worker.fingerprint, &self.worker.me) {
            Admission::Run { head, args_at } => {
                if !self.client_alive(&head.reply_to).await {
                    return self.drop_orphan(msg, &head.reply_to).await;
                }
                let running = Running::new(&head, delivery);
                let payload = msg.payload.clone();
                self.held.insert(key, Held { msg, refused: false });
                self.prepare(
                    key,
                    running,
                    Prepared {
                        key,
                        head,
                        payload,
                        args_at,
                        fetched: None,
                        stored: ItemSet::default(),
                        room: Reserved::default(),
                    },
                );
            }
            Admission::Refuse { task_id, reply_to, error, log } => {
                if let Some(log) = log {
                    self.log(log);
                }
                self.worker.stats.update(|s| s.refused += 1);
                let parts = refusal(&self.worker.me, task_id, delivery, error);
                self.held.insert(key, Held { msg, refused: true });
                self.deliver(key, reply_to, parts);
            }
            Admission::Drop { log } => {
                self.log(log);
                self.worker.stats.update(|s| s.refused += 1);
                let _ = msg.ack_with(AckKind::Term).await;
            }
        }
    }

    /// Whether the client at `reply_to` holds its lease: asked of the broker at most once
    /// a second per client. A broker that cannot answer counts as alive, and so does a
    /// client without a lease that still answers: only a client both without a lease and
    /// silent is gone.
    async fn client_alive(&mut self, reply_to: &str) -> bool {
        let now = Instant::now();
        let id = reply_to.rsplit('.').next().unwrap_or(reply_to);
        if self.clients.alive.get(id).is_some_and(|until| *until > now) {
            return true;
        }
        if self.clients.dead.get(id).is_some_and(|until| *until > now) {
            return false;
        }
        let alive = broker::lease_held(&self.worker.leases, &self.worker.config.queue, id).await != Some(false)
            || self.answers(reply_to).await;
        if alive {
            self.clients.alive.retain(|_, until| *until > now);
            self.clients.alive.insert(id.to_string(), now + LEASE_TRUST);
        } else {
            self.clients.dead.retain(|_, until| *until > now);
            self.clients.dead.insert(id.to_string(), now + LEASE_TRUST);
        }
        alive
    }

    /// Whether the client at `reply_to` answers (it confirms any message, even an empty
    /// one): a client without a lease is dropped only when it does not, so a lease lost
    /// or late on the broker's side never costs a live client its work.
    async fn answers(&self, reply_to: &str) -> bool {
        let id = reply_to.rsplit('.').next().unwrap_or(reply_to);
        let subject = self.worker.config.queue.probe_subject(id);
        let probe = self.worker.client.request(subject, bytes::Bytes::new());
        matches!(tokio::time::timeout(PROBE_PATIENCE, probe).await, Ok(Ok(_)))
    }

    /// Drops a task of a client that is gone: terminated, never run.
    async fn drop_orphan(&mut self, msg: jetstream::Message, reply_to: &str) {
        if self.clients.gone.insert(reply_to.to_string()) {
            self.log(format_args!("dropping the tasks of client {reply_to}, whose lease lapsed: it is gone"));
        }
        self.worker.stats.update(|s| s.orphaned += 1);
        let _ = msg.ack_with(AckKind::Term).await;
    }

    /// Starts a task: at once when its items are in its message and it is a first
    /// delivery; else once its items are read from the object store, and a redelivery's
    /// progress (which items already have their results stored) from the progress
    /// stream, in the background.
    fn prepare(&mut self, key: u64, running: Running, mut ready: Prepared) {
        let look = running.delivery > 1 && running.items > 1;
        let subject = self.worker.config.queue.progress_subject(running.client(), &running.task_id.to_string());
        self.running.insert(key, running);
        if ready.head.args_object.is_none() && !look {
            return self.start(ready);
        }
        let (objects, progress) = (self.worker.objects.clone(), self.worker.progress.clone());
        let (room, stats) = (self.room.clone(), self.worker.stats.clone());
        self.fetches.spawn(async move {
            if look {
                ready.stored = progress::stored_items(&progress, &subject, ready.head.items).await;
            }
            if let Some(name) = &ready.head.args_object {
                // One that cannot be sized reserves nothing: its read fails and says why.
                let size = objects.size_of(name).await.unwrap_or(0);
                ready.room = room.reserve(size, || stats.update(|s| s.args_waited += 1)).await;
                ready.fetched = Some(objects.get(name).await);
            }
            ready
        });
    }

    /// Hands a prepared task to a slot, which runs only the items without stored
    /// results.
    fn start(&mut self, ready: Prepared) {
        let Prepared { key, head, payload, args_at, stored, room, .. } = ready;
        let Some(running) = self.running.get_mut(&key) else { return };
        running._room = room;
        let skipped = stored.count_below(head.items);
        if skipped > 0 {
            self.worker.stats.update(|s| s.items_skipped += skipped as u64);
        }
        running.stored = stored.clone();
        let pending = running.pending.clone();
        self.slots.run(Job { key, head, payload, args_at, stored, pending });
    }

    /// A task's items, read from the object store (or not), and its progress: it runs
    /// now. Items that are not there (its task settled: this is a redelivery) refuse it,
    /// with the error for its client, which drops it; items the broker could not give
    /// now put it back on the queue, for another try.
    async fn on_fetched(&mut self, ready: Prepared) {
        let key = ready.key;
        match ready.fetched {
            None => self.start(ready),
            Some(Fetch::Got(items)) => {
                self.start(Prepared { payload: items.into(), args_at: 0, fetched: None, ..ready })
            }
            Some(Fetch::Failed(error)) => {
                let Some(Running { task_id, reply_to, delivery, .. }) = self.running.remove(&key) else { return };
                if let Some(held) = self.held.get_mut(&key) {
                    held.refused = true;
                }
                self.log(format_args!("refusing task {task_id} from {reply_to}: {error}"));
                self.worker.stats.update(|s| s.refused += 1);
                let parts = refusal(&self.worker.me, task_id, delivery, error);
                self.deliver(key, reply_to, parts);
            }
            Some(Fetch::Retry(error)) => {
                self.running.remove(&key);
                if let Some(held) = self.held.remove(&key) {
                    self.log(format_args!("task {}: {error}; it goes back to the queue", ready.head.task_id));
                    let _ = held.msg.ack_with(AckKind::Nak(Some(Duration::from_secs(1)))).await;
                }
            }
        }
    }

    /// A slot says something of a task: its batch is full (it goes now), or it ended
    /// (its last results go once no batch is on its way).
    fn on_slot_event(&mut self, key: u64, event: SlotEvent) {
        match event {
            SlotEvent::Full => self.send_batch(key),
            SlotEvent::Done(pid) => {
                let Some(running) = self.running.get_mut(&key) else { return };
                running.ended = Some(pid);
                if !running.sending {
                    self.finish(key);
                }
            }
        }
    }

    /// Sends the batches that waited long enough.
    fn on_batch_tick(&mut self) {
        let now = Instant::now();
        let due: Vec<u64> = self
            .running
            .iter()
            .filter(|(_, r)| !r.sending && r.ended.is_none() && r.failed.is_none())
            .filter(|(_, r)| r.pending.lock().unwrap_or_else(|e| e.into_inner()).due(now, self.flush_every))
            .map(|(key, _)| *key)
            .collect();
        for key in due {
            self.send_batch(key);
        }
    }

    /// Stores the finished results of a running task that are not sent yet, then notes
    /// which items have their results stored (only then: a note never claims more).
    fn send_batch(&mut self, key: u64) {
        let max = self.worker.client.server_info().max_payload;
        let Some(running) = self.running.get_mut(&key) else { return };
        if running.sending || running.ended.is_some() || running.failed.is_some() {
            return;
        }
        let runs = running.pending.lock().unwrap_or_else(|e| e.into_inner()).take();
        if runs.is_empty() {
            return;
        }
        running.sending = true;
        let mut stored = running.stored.clone();
        for (first, results) in &runs {
            stored.add(*first, results.len() as u32);
        }
        let parts = parts_of(&self.worker.me, running, None, max, &runs);
        let note = self.worker.config.queue.progress_subject(running.client(), &running.task_id.to_string());
        let (items, subject) = (running.items, running.reply_to.clone());
        let patience = self.worker.config.result_patience;
        let (js, objects) = (self.worker.js.clone(), self.worker.objects.clone());
        self.deliveries.spawn(async move {
            let (key, delivery) = deliver(js.clone(), objects, key, subject, parts, patience).await;
            if matches!(delivery, Delivery::Confirmed) {
                progress::note_stored(&js, note, items, &stored).await;
            }
            (key, Stage::Batch(stored), delivery)
        });
    }

    /// A task's slot is done and no batch is on its way: its last results go, and it
    /// is acked once they are stored; or, when a batch could not be stored, it goes back
    /// to the queue.
    fn finish(&mut self, key: u64) {
        let max = self.worker.client.server_info().max_payload;
        let Some(running) = self.running.remove(&key) else { return };
        if let Some(why) = running.failed {
            self.deliveries.spawn(async move { (key, Stage::Final(None), Delivery::Abandoned(why)) });
            return;
        }
        let runs = running.pending.lock().unwrap_or_else(|e| e.into_inner()).take();
        let parts = parts_of(&self.worker.me, &running, running.ended.flatten(), max, &runs);
        // Some items' results were stored before: a note names them, to go with the task.
        let note = (!running.stored.is_empty())
            .then(|| self.worker.config.queue.progress_subject(running.client(), &running.task_id.to_string()));
        self.deliver_final(key, running.reply_to, parts, note);
    }

    fn deliver(&mut self, key: u64, reply_to: String, parts: Vec<Part>) {
        self.deliver_final(key, reply_to, parts, None);
    }

    fn deliver_final(&mut self, key: u64, reply_to: String, parts: Vec<Part>, note: Option<String>) {
        let patience = self.worker.config.result_patience;
        let (js, objects) = (self.worker.js.clone(), self.worker.objects.clone());
        self.deliveries.spawn(async move {
            let (key, delivery) = deliver(js, objects, key, reply_to, parts, patience).await;
            (key, Stage::Final(note), delivery)
        });
    }

    /// A batch of a running task's results is stored (or not): the next may go, and a
    /// task whose slot is done meanwhile finishes.
    fn on_batch_stored(&mut self, key: u64, stored: ItemSet, delivery: Delivery) {
        let Some(running) = self.running.get_mut(&key) else { return };
        running.sending = false;
        match delivery {
            Delivery::Confirmed => running.stored = stored,
            Delivery::Abandoned(why) => {
                running.failed.get_or_insert(why);
            }
        }
        if running.ended.is_some() {
            self.finish(key);
        }
    }

    /// A result is stored for its client: the task leaves the queue (a batch of a
    /// running task: the next may go). One the broker would not store goes back to the
    /// queue, for another try.
    async fn on_delivered(&mut self, key: u64, stage: Stage, delivery: Delivery) {
        if let Stage::Batch(stored) = stage {
            return self.on_batch_stored(key, stored, delivery);
        }
        let Some(h) = self.held.remove(&key) else { return };
        match delivery {
            Delivery::Confirmed => {
                let kind = if h.refused { AckKind::Term } else { AckKind::Ack };
                let acked = h.msg.ack_with(kind).await.is_ok();
                if !h.refused {
                    self.worker.stats.update(|s| s.completed += 1);
                }
                if let (true, Stage::Final(Some(note))) = (acked, stage) {
                    tokio::spawn(progress::forget(self.worker.progress.clone(), note));
                }
            }
            Delivery::Abandoned(why) => {
                self.log(format_args!("could not store a result, the task goes back to the queue: {why}"));
                let _ = h.msg.ack_with(AckKind::Nak(None)).await;
                self.worker.stats.update(|s| s.abandoned += 1);
            }
        }
    }

    /// Every third of `ack_wait`: in-progress acks for what this worker holds, and
    /// requests whose end never came (their connection broke) are over.
    async fn on_heartbeat(&mut self) {
        let mut sent = 0;
        for h in self.held.values() {
            if h.msg.ack_with(AckKind::Progress).await.is_ok() {
                sent += 1;
            }
        }
        if sent > 0 {
            self.worker.stats.update(|s| s.progress_acks += sent);
        }
        self.book.expire(Instant::now());
        self.announce().await;
        if self.held.is_empty() {
            self.look_for_other_builds().await;
            let subject = self.worker.config.queue.task_subject(self.worker.fingerprint);
            let swept = leftovers::sweep(&self.worker.stream, &self.worker.consumer, &subject).await;
            if swept > 0 {
                self.log(format_args!("removed {swept} acked tasks that a restarted broker had brought back"));
            }
        }
    }

    /// Tells whoever looks at the pool's status that this worker is alive, and what it
    /// does (best effort: a heartbeat the broker misses is followed by the next).
    async fn announce(&self) {
        let me = LiveWorker {
            host: self.worker.me.host.clone(),
            pid: self.worker.me.worker_pid,
            build: self.worker.fingerprint,
            slots: self.slot_count,
            running: self.running.len(),
            stats: *self.worker.stats.lock(),
            at_unix_ms: unix_ms(),
            draining: self.stopping,
            isolation: self.isolation.clone(),
        };
        let Ok(beat) = serde_json::to_vec(&me) else { return };
        let subject = self.worker.config.queue.presence_subject(&me.name());
        let _ = self.worker.js.publish(subject, beat.into()).await;
    }

    /// An idle worker looks for tasks of other builds in the queue, which never come to
    /// it, and says so once (and again when that changes).
    async fn look_for_other_builds(&mut self) {
        let Ok(mut subjects) = self.worker.stream.info_with_subjects(self.worker.config.queue.task_subjects()).await
        else {
            return;
        };
        let mut waiting = Vec::new();
        while let Some(Ok(subject)) = subjects.next().await {
            waiting.push(subject);
        }
        let notice = other_builds_notice(self.worker.fingerprint, &waiting);
        if notice != self.notice {
            if let Some(n) = &notice {
                self.log(n);
            }
            self.notice = notice;
        }
    }

    /// Told to stop: take no new task, finish (store the results of, ack) those held,
    /// then end. Says so at once, in the log and in the pool's status.
    async fn on_stop(&mut self) {
        self.stopping = true;
        self.log(format_args!("draining: taking no new task, finishing the {} it holds, then ending", self.held.len()));
        self.announce().await;
    }

    /// The broker connection went or came back.
    fn on_broker_event(&mut self, event: Option<async_nats::Event>) {
        match event {
            Some(async_nats::Event::Disconnected) => {
                self.log("lost the broker; reconnecting");
                self.disconnected = true;
            }
            Some(async_nats::Event::Connected) if self.disconnected => {
                self.log("reconnected to the broker");
                self.disconnected = false;
                // Requests of the old connection are gone with it.
                self.book.clear();
            }
            _ => {}
        }
    }

    /// The loop is over: the slots finish, and what was sent reaches the broker.
    async fn shut_down(self) {
        self.slots.join();
        let _ = self.worker.client.flush().await;
    }
}

/// The result messages of a task's `runs` of outcomes (each `(first item, outcomes)`),
/// run on this worker (in process `process_pid`, when one ran it all).
fn parts_of(
    me: &RanOn,
    running: &Running,
    process_pid: Option<u32>,
    max_payload: usize,
    runs: &[(u32, ItemResults)],
) -> Vec<Part> {
    let ran_on = RanOn { process_pid, ..me.clone() };
    let of =
        ResultOf { ran_on: &ran_on, client: running.client(), task_id: running.task_id, delivery: running.delivery };
    runs.iter().flat_map(|(first, results)| result_parts(&of, max_payload, *first, results)).collect()
}
