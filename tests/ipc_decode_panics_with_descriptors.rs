//! A value carrying a descriptor whose `Deserialize` panics after the descriptor was
//! received (a queue's `get`, a connection's `recv`): the panic reaches the caller, the
//! message is consumed, and the descriptors it brought are closed at once. Before, they
//! stayed in the receiving thread's decode scope: a descriptor leaked per panic, kept the
//! peer's end open (its reader never saw the end), and a later `take` outside any message
//! was handed the stale descriptor.

use std::time::Duration;

use multiproc::{Connection, Pipe, Queue};
use serde::{Deserialize, Deserializer, Serialize};

multiproc::test_init!();

/// Decodes only as `Fine`: `Bomb`'s `Deserialize` panics.
#[derive(Debug, Serialize)]
enum Part {
    Fine,
    Bomb,
}

impl<'de> Deserialize<'de> for Part {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let fine = bool::deserialize(d)?;
        assert!(fine, "a bomb cannot be decoded");
        Ok(Part::Fine)
    }
}

impl Part {
    fn encoded(&self) -> bool {
        matches!(self, Part::Fine)
    }
}

/// What travels: the part that may panic, then a connection (one descriptor), which a
/// panic leaves untaken.
#[derive(Serialize, Deserialize)]
struct Parcel(#[serde(with = "part_as_bool")] Part, Connection<u8>);

mod part_as_bool {
    use super::Part;
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(p: &Part, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bool(p.encoded())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Part, D::Error> {
        Part::deserialize(d)
    }
}

/// Sends a parcel carrying one end of a fresh pipe (and drops the sender's copy), has
/// `receive` panic decoding it, and checks that the end it brought was closed: its peer
/// reads the end of the connection, with no wait.
fn the_carried_end_is_closed(send: impl FnOnce(Parcel), receive: impl FnOnce()) {
    let (ours, carried) = Pipe::duplex::<u8>().unwrap();
    send(Parcel(Part::Bomb, carried));
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(receive)).unwrap_err();
    let message = caught.downcast_ref::<String>().map(String::as_str).or(caught.downcast_ref::<&str>().copied());
    assert_eq!(message, Some("a bomb cannot be decoded"));
    // Closing is synchronous: once no descriptor of the carried end is open, our end
    // is readable at once (zero wait) and reads as closed.
    assert!(ours.poll(Some(Duration::ZERO)).unwrap(), "the carried end is still open somewhere");
    assert!(ours.recv().is_err(), "the peer of a closed end read a value");
}

#[test]
fn a_queue_get_that_panics_closes_the_descriptors_it_received() {
    let q = Queue::<Parcel>::new().unwrap();
    for _ in 0..3 {
        the_carried_end_is_closed(|p| q.put(p).unwrap(), || drop(q.get()));
    }
    // The queue goes on: the next parcel decodes, with its own descriptor.
    let (ours, carried) = Pipe::duplex::<u8>().unwrap();
    q.put(Parcel(Part::Fine, carried)).unwrap();
    let Parcel(_, theirs) = q.get().unwrap();
    theirs.send(7).unwrap();
    assert_eq!(ours.recv().unwrap(), 7);
}

#[test]
fn a_connection_recv_that_panics_closes_the_descriptors_it_received() {
    let (tx, rx) = Pipe::duplex::<Parcel>().unwrap();
    for _ in 0..3 {
        the_carried_end_is_closed(|p| tx.send(p).unwrap(), || drop(rx.recv()));
    }
    let (ours, carried) = Pipe::duplex::<u8>().unwrap();
    tx.send(Parcel(Part::Fine, carried)).unwrap();
    let Parcel(_, theirs) = rx.recv().unwrap();
    theirs.send(9).unwrap();
    assert_eq!(ours.recv().unwrap(), 9);
}
