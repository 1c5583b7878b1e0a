//! Namespaces: named attributes, each an encoded value with its type's name.

use std::collections::BTreeMap;
use std::sync::Mutex;

use super::common::{Ctx, Done, lock, put_bool, put_varint};
use crate::manager::protocol::RemoteError;
use crate::manager::protocol::namespace::NamespaceOp;

/// Attribute name to (type name, encoded value).
pub(super) type Names = BTreeMap<String, (String, Vec<u8>)>;

fn put_str(out: &mut Vec<u8>, s: &str) {
    crate::wire::codec::encode_into(s, out).expect("a str always encodes");
}

pub(super) fn handle(ns: &Mutex<Names>, op: &NamespaceOp<'_>, cx: &mut Ctx<'_, '_>) -> Result<Done, RemoteError> {
    let mut ns = lock(ns);
    let (out, held) = (&mut *cx.out, cx.held);
    match *op {
        NamespaceOp::Get { name } => match ns.get(name) {
            None => out.push(0),
            Some((types, value)) => {
                out.push(1);
                put_str(out, types);
                out.extend_from_slice(value);
            }
        },
        NamespaceOp::Set { name, types, value } => {
            held.stored(value);
            let old = ns.insert(name.to_string(), (types.to_string(), value.to_vec()));
            old.iter().for_each(|(_, v)| held.dropped(v));
        }
        NamespaceOp::Remove { name } => {
            let old = ns.remove(name);
            old.iter().for_each(|(_, v)| held.dropped(v));
            put_bool(out, old.is_some());
        }
        NamespaceOp::Names => {
            put_varint(out, ns.len() as u64);
            for k in ns.keys() {
                put_str(out, k);
            }
        }
    }
    Ok(Done::Reply)
}
