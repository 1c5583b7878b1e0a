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

use super::address::Address;
use super::client::{self, Client};
use super::error::ManagerError;
use super::protocol::{Kind, op};

/// A counted reference to one server object.
pub struct Handle {
    pub(crate) client: Arc<Client>,
    pub(crate) id: u64,
    kind: Kind,
    /// Whether the server counted this handle (a clone whose increment failed is not).
    counted: bool,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} at {}", self.kind.name(), self.id, self.client.address)
    }
}

/// The serialized form of a proxy.
#[derive(Serialize, Deserialize)]
struct Wire {
    address: Address,
    authkey: Vec<u8>,
    id: u64,
    kind: Kind,
    types: String,
    token: u64,
}

impl Handle {
    /// Wraps a reference the server has just counted for this process.
    pub(crate) fn counted(client: Arc<Client>, id: u64, kind: Kind) -> Handle {
        Handle { client, id, kind, counted: true }
    }

    /// Another counted reference to the same object.
    pub(crate) fn duplicate(&self, types: &str) -> Handle {
        let counted = self
            .client
            .call(op::INCREF, |w| w.u64(self.id).u8(self.kind as u8).str(types).done(), client::unit)
            .is_ok();
        Handle { client: self.client.clone(), id: self.id, kind: self.kind, counted }
    }

    pub(crate) fn serialize<S: serde::Serializer>(&self, s: S, types: &str) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        let token = self
            .client
            .call(op::TRANSIT, |w| w.u64(self.id).done(), client::value::<u64>)
            .map_err(|e| S::Error::custom(format!("cannot send a proxy of {types}: {e}")))?;
        Wire {
            address: self.client.address.clone(),
            authkey: self.client.authkey.clone(),
            id: self.id,
            kind: self.kind,
            types: types.to_string(),
            token,
        }
        .serialize(s)
    }

    pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(
        d: D,
        kind: Kind,
        types: &str,
    ) -> Result<Handle, D::Error> {
        use serde::de::Error;
        let w = Wire::deserialize(d)?;
        if w.kind != kind || w.types != types {
            return Err(D::Error::custom(format!("a proxy of {} cannot be received as a proxy of {types}", w.types)));
        }
        Handle::adopt(&w.address, &w.authkey, w.id, kind, types, w.token)
            .map_err(|e| D::Error::custom(format!("cannot receive a proxy of {types}: {e}")))
    }

    fn adopt(
        address: &Address,
        authkey: &[u8],
        id: u64,
        kind: Kind,
        types: &str,
        token: u64,
    ) -> Result<Handle, ManagerError> {
        let client = Client::shared(address, authkey)?;
        client.call(op::ADOPT, |w| w.u64(id).u64(token).u8(kind as u8).str(types).done(), client::unit)?;
        Ok(Handle::counted(client, id, kind))
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.counted {
            let id = self.id;
            let _ = self.client.send_one_way(op::DECREF, |w| w.u64(id).done());
        }
    }
}
