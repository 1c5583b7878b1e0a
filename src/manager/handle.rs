//! What every proxy holds: its process's client of the server and an object id, counted
//! as one reference on the server for as long as the proxy lives.
//!
//! A proxy sent to another process serializes as the server's address, its authkey, the
//! object id and a *transit* token: serializing asks the server to hold one reference
//! for the journey (charged to the sender's session), and the receiver adopts it when it
//! decodes the proxy. So the object survives even if the sender drops its own proxy
//! before the receiver has started; and if the receiver never decodes it, the reference
//! goes when the sender's process ends.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::client::{self, Client};
use super::error::ManagerError;
use super::protocol::{Kind, registry as op};
use crate::address::Address;

/// A counted reference to one server object.
pub struct Handle {
    /// The client, or why the proxy could not connect when it was received.
    client: Result<Arc<Client>, String>,
    pub(crate) id: u64,
    kind: Kind,
    /// Whether the server counted this handle (a clone whose increment failed is not).
    counted: bool,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.client {
            Ok(c) => write!(f, "{} {} at {}", self.kind.name(), self.id, c.address),
            Err(_) => write!(f, "{} {} (unusable)", self.kind.name(), self.id),
        }
    }
}

/// The serialized form of a proxy.
#[derive(Serialize, Deserialize)]
struct Wire {
    address: Address,
    authkey: Vec<u8>,
    /// The run of the server the object lives in (see `Client::shared`).
    server: [u8; 16],
    token: u64,
    id: u64,
    kind: Kind,
    types: String,
}

impl Handle {
    /// Wraps a reference the server has just counted for this process.
    pub(crate) fn counted(client: Arc<Client>, id: u64, kind: Kind) -> Handle {
        Handle { client: Ok(client), id, kind, counted: true }
    }

    /// The client, or the error that made this proxy unusable when it was received.
    pub(crate) fn client(&self) -> Result<&Arc<Client>, ManagerError> {
        self.client.as_ref().map_err(|why| ManagerError::Unusable(why.clone()))
    }

    /// A posted request about this object (see [`Client::post`]).
    pub(crate) fn post(
        &self,
        op: u8,
        write: impl FnOnce(&mut super::protocol::Writer<'_>) -> Result<(), crate::wire::CodecError>,
    ) -> Result<(), ManagerError> {
        self.client()?.post(op, write)
    }

    /// One request about this object (see [`Client::call`]).
    pub(crate) fn call<R>(
        &self,
        op: u8,
        write: impl FnOnce(&mut super::protocol::Writer<'_>) -> Result<(), crate::wire::CodecError>,
        read: impl FnOnce(&[u8]) -> Result<R, crate::wire::CodecError>,
    ) -> Result<R, ManagerError> {
        self.client()?.call(op, write, read)
    }

    /// Another counted reference to the same object.
    /// A copy the server does not count, for a helper thread that outlives no borrow of
    /// this handle by more than one wait (an async call's waiter): no round trip to make it.
    pub(crate) fn uncounted(&self) -> Handle {
        Handle { client: self.client.clone(), id: self.id, kind: self.kind, counted: false }
    }

    pub(crate) fn duplicate(&self, types: &str) -> Handle {
        let counted =
            self.call(op::INCREF, |w| w.u64(self.id).u8(self.kind as u8).str(types).done(), client::unit).is_ok();
        Handle { client: self.client.clone(), id: self.id, kind: self.kind, counted }
    }

    pub(crate) fn serialize<S: serde::Serializer>(&self, s: S, types: &str) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let c = self.client().map_err(|e| S::Error::custom(format!("cannot send a proxy of {types}: {e}")))?;
        let token = c
            .call(op::TRANSIT, |w| w.u64(self.id).done(), client::value::<u64>)
            .map_err(|e| S::Error::custom(format!("cannot send a proxy of {types}: {e}")))?;
        Wire {
            address: c.address.clone(),
            authkey: c.authkey.clone(),
            server: c.server,
            token,
            id: self.id,
            kind: self.kind,
            types: types.to_string(),
        }
        .serialize(s)
    }

    /// Decodes a proxy and adopts its reference. A proxy that cannot be adopted (the
    /// server is gone, the types differ) still decodes, so that its error can be told in
    /// full (the codec keeps no message): every call on it returns
    /// [`ManagerError::Unusable`] saying why.
    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
        kind: Kind,
        types: &str,
    ) -> Result<Handle, D::Error> {
        let w = Wire::deserialize(d)?;
        let adopted = if w.kind != kind || w.types != types {
            Err(format!("a proxy of {} was received as a proxy of {types}", w.types))
        } else {
            Handle::adopt(&w, kind, types).map_err(|e| format!("a proxy of {types} could not be received: {e}"))
        };
        Ok(match adopted {
            Ok(h) => h,
            Err(why) => Handle { client: Err(why), id: w.id, kind, counted: false },
        })
    }

    fn adopt(w: &Wire, kind: Kind, types: &str) -> Result<Handle, ManagerError> {
        let client = Client::shared(&w.address, &w.authkey, Some(w.server))?;
        client.call(op::ADOPT, |r| r.u64(w.id).u64(w.token).u8(kind as u8).str(types).done(), client::unit)?;
        Ok(Handle::counted(client, w.id, kind))
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let (true, Ok(c)) = (self.counted, &self.client) {
            let id = self.id;
            let _ = c.post(op::DECREF, |w| w.u64(id).done());
        }
    }
}

/// The name of a proxy's type parameter, in the type string a handle is checked against
/// when a proxy is decoded (`dict<K, V>`, ...).
pub(crate) fn type_name<T: ?Sized>() -> &'static str {
    std::any::type_name::<T>()
}
