//! A message that does not deserialize is an error at the receiver, and the queue (or
//! pipe) goes on with the next message.

use std::time::Duration;

use multiproc::{Pipe, PipeError, Process, Queue, QueueError};
use serde::{Deserialize, Deserializer, Serialize};

multiproc::test_init!();

/// Serializes any number, but refuses odd ones when deserializing.
#[derive(Debug, PartialEq, Serialize)]
struct Even(u32);

impl<'de> Deserialize<'de> for Even {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Even, D::Error> {
        let n = u32::deserialize(d)?;
        if n % 2 == 1 { Err(serde::de::Error::custom(format!("{n} is odd"))) } else { Ok(Even(n)) }
    }
}

fn send_mixed(q: Queue<Even>) {
    for n in [1, 2, 3, 4] {
        q.put(Even(n)).unwrap();
    }
}

#[test]
fn an_undecodable_queue_message_is_an_error_and_the_queue_goes_on() {
    let q = Queue::<Even>::new().unwrap();
    let mut p = Process::new(send_mixed, q.clone());
    p.start().unwrap();
    let long = Duration::from_secs(60);
    match q.get_timeout(long) {
        Err(QueueError::Decode(e)) => assert!(e.to_string().contains("Even"), "{e}"),
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert_eq!(q.get_timeout(long).unwrap(), Even(2));
    assert!(matches!(q.get_timeout(long), Err(QueueError::Decode(_))));
    assert_eq!(q.get_timeout(long).unwrap(), Even(4));
    p.join().unwrap();
}

#[test]
fn a_value_that_does_not_serialize_is_refused_and_nothing_is_put() {
    struct Refuses;
    impl Serialize for Refuses {
        fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
            Err(serde::ser::Error::custom("not today"))
        }
    }
    impl<'de> Deserialize<'de> for Refuses {
        fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Refuses, D::Error> {
            Ok(Refuses)
        }
    }
    let q = Queue::<Refuses>::new().unwrap();
    assert!(matches!(q.put(Refuses), Err(QueueError::Encode(_))));
    assert!(q.empty());
}

#[test]
fn an_undecodable_pipe_message_is_an_error_and_the_pipe_goes_on() {
    let (a, b) = Pipe::duplex::<Even>().unwrap();
    b.send(Even(3)).unwrap();
    b.send_bytes(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff]).unwrap();
    b.send(Even(8)).unwrap();
    assert!(matches!(a.recv(), Err(PipeError::Decode(_))));
    assert!(matches!(a.recv(), Err(PipeError::Decode(_))));
    assert_eq!(a.recv().unwrap(), Even(8));
}
