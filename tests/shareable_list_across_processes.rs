//! `ShareableList` (Python's `multiprocessing.shared_memory.ShareableList`): a list of
//! fixed length in one named segment, read and written in place by other processes that
//! attach it by name or receive the handle; a value too big for its slot is refused with
//! an error naming the item and the room; a segment that is not a list is refused.

use std::io::ErrorKind;

use ShareableItem::None as Nothing;
use multiproc::{Process, Queue, ShareableItem, ShareableList, SharedMemory};

multiproc::test_init!();

fn sample() -> Vec<ShareableItem> {
    vec![(-7).into(), 2.5.into(), true.into(), "howdy".into(), b"HoWdY".as_slice().into(), Nothing, i64::MAX.into()]
}

/// Attaches the list by name, checks what the parent wrote, and changes every item.
fn rewrite(name: String) {
    let mut list = ShareableList::attach(&name).unwrap();
    assert_eq!(list.to_vec().unwrap(), sample());
    list.set(0, "eight ch").unwrap(); // a number's slot holds up to 8 bytes of string
    list.set(1, Nothing).unwrap();
    list.set(2, 3.25).unwrap();
    list.set(3, "hi").unwrap();
    list.set(4, b"12345678".as_slice()).unwrap();
    list.set(5, false).unwrap();
    list.set(6, i64::MIN).unwrap();
}

#[test]
fn a_child_attaches_by_name_and_rewrites_every_item() {
    let list = ShareableList::create(sample()).unwrap();
    assert_eq!(list.len(), 7);
    assert_eq!(list.format().unwrap(), "qd?5s5sxq");
    let mut p = Process::new(rewrite, list.name().to_string());
    p.start().unwrap();
    p.join().unwrap();
    assert_eq!(p.exitcode(), Some(0));
    let want: Vec<ShareableItem> = vec![
        "eight ch".into(),
        Nothing,
        3.25.into(),
        "hi".into(),
        b"12345678".as_slice().into(),
        false.into(),
        i64::MIN.into(),
    ];
    assert_eq!(list.to_vec().unwrap(), want);
    assert_eq!(list.format().unwrap(), "8sxd2s8s?q");
}

/// Receives the list itself (its descriptor travels) and reports what it finds.
fn report((list, out): (ShareableList, Queue<(usize, Option<usize>, String)>)) {
    let found = (list.count(&1.into()).unwrap(), list.index(&"b".into()).unwrap(), list.name().to_string());
    out.put(found).unwrap();
}

#[test]
fn a_handle_travels_as_an_argument_and_count_index_compare_with_type() {
    let list = ShareableList::create([ShareableItem::from(1), "b".into(), 1.into(), 1.0.into(), true.into()]).unwrap();
    let out = Queue::new().unwrap();
    let mut p = Process::new(report, (list.try_clone().unwrap(), out.clone()));
    p.start().unwrap();
    assert_eq!(out.get().unwrap(), (2, Some(1), list.name().to_string()));
    p.join().unwrap();
    assert_eq!(list.index(&"c".into()).unwrap(), None);
    assert_eq!(list.count(&true.into()).unwrap(), 1);
}

#[test]
fn a_value_too_big_for_its_slot_is_refused_and_the_item_kept() {
    let mut list = ShareableList::create(["abc", "a string of 17 by"]).unwrap();
    assert_eq!(list.capacity(0).unwrap(), 8);
    assert_eq!(list.capacity(1).unwrap(), 24);
    let e = list.set(0, "nine byte").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let msg = e.to_string();
    assert!(msg.contains("item 0") && msg.contains("room for 8 bytes") && msg.contains("needs 9"), "{msg}");
    assert_eq!(list.get(0).unwrap(), "abc".into());
    list.set(1, "x".repeat(24)).unwrap();
    assert!(list.set(1, "x".repeat(25)).is_err());
    let e = list.set(2, 1).unwrap_err();
    assert!(e.to_string().contains("index 2 is out of range for a ShareableList of 2 items"), "{e}");
    assert!(list.get(9).is_err());
}

#[test]
fn empty_and_unicode_items() {
    let list = ShareableList::create(Vec::<ShareableItem>::new()).unwrap();
    assert!(list.is_empty());
    assert_eq!(list.format().unwrap(), "");
    let again = ShareableList::attach(list.name()).unwrap();
    assert_eq!(again.len(), 0);
    let list = ShareableList::create(["", "héllo wörld", "\0kept\0"]).unwrap();
    assert_eq!(list.to_vec().unwrap(), ["".into(), "héllo wörld".into(), "\0kept\0".into()]);
    assert_eq!(format!("{list:?}"), r#"[Str(""), Str("héllo wörld"), Str("\0kept\0")]"#);
}

#[test]
fn a_segment_that_is_not_a_list_is_refused_with_its_name() {
    let mut shm = SharedMemory::create(4096).unwrap();
    let e = ShareableList::attach(shm.name()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidData);
    assert!(e.to_string().contains(shm.name()) && e.to_string().contains("not a valid ShareableList"), "{e}");
    // A list header claiming more items than the segment holds.
    shm.as_mut_slice()[..8].copy_from_slice(b"MPSHLST1");
    shm.as_mut_slice()[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    let e = ShareableList::attach(shm.name()).unwrap_err();
    assert!(e.to_string().contains("items do not fit"), "{e}");
    assert_eq!(ShareableList::attach("mp-no-such-list").unwrap_err().kind(), ErrorKind::NotFound);
    // A slot whose offset runs past the end (or overflows) is refused when attaching.
    let list = ShareableList::create([1, 2]).unwrap();
    let mut raw = SharedMemory::attach(list.name()).unwrap();
    raw.as_mut_slice()[40..48].copy_from_slice(&u64::MAX.to_le_bytes());
    let e = ShareableList::attach(list.name()).unwrap_err();
    assert!(e.to_string().contains("item 1 has a bad slot"), "{e}");
}

#[test]
fn an_item_scribbled_over_is_an_error_not_a_crash() {
    let list = ShareableList::create(["abcd"]).unwrap();
    let mut raw = SharedMemory::attach(list.name()).unwrap();
    // The length of item 0 (at 16 + 16) claims more than its 8-byte slot.
    raw.as_mut_slice()[32..36].copy_from_slice(&100u32.to_le_bytes());
    assert!(list.get(0).unwrap_err().to_string().contains("claims 100 bytes"));
    // Its kind: unknown.
    raw.as_mut_slice()[32..36].copy_from_slice(&4u32.to_le_bytes());
    raw.as_mut_slice()[28..32].copy_from_slice(&77u32.to_le_bytes());
    assert!(list.get(0).unwrap_err().to_string().contains("unknown kind 77"));
}

#[test]
fn the_creator_removes_the_name_and_a_clone_does_not() {
    let list = ShareableList::create_named(&format!("sl-test-{}", std::process::id()), [1, 2, 3]).unwrap();
    let name = list.name().to_string();
    drop(list.try_clone().unwrap());
    assert!(ShareableList::attach(&name).is_ok());
    drop(list);
    assert_eq!(ShareableList::attach(&name).unwrap_err().kind(), ErrorKind::NotFound);
}
