//! Reads of the registry nodes (DESIGN §3): a type index and the deletion registry, streamed
//! (`stream.rs`) and interpreted entry by entry (`node.rs`), a type index's link entries
//! followed under the client's semaphore as each batch is built. The collecting `read_*` forms
//! are built on the streams, and `read_deletion_entry` reads one entry of the registry.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::stream::{self, BoxStream, Stream, StreamExt, TryStreamExt};
use tracing::debug;
use url::Url;

use super::node::{
    INDEX_WRAPPER, IndexSlot, Rejected, index_slot, is_index_metadata, named_entry, registry_slot,
};
use super::stream::{Entries, Layout, NodeBody};
use super::{
    DeletionEntry, DeletionRegistry, IndexBatch, METADATA_KEY, RegistryBatch, RelayClient,
    RelayError, TypeIndex,
};
use crate::domain::{
    Did, Soul, deletion_entry_soul, deletion_index_soul, redacted, type_index_soul,
};

/// Batch size of the collecting reads.
const COLLECT_BATCH: usize = 1024;

/// Largest node a type-index link entry may lead to: an entry is `{soul, nodeId, timestamp}`.
const MAX_ENTRY_NODE_BYTES: usize = 64 * 1024;

const INDEX_LAYOUT: Layout = Layout {
    skip: is_index_metadata,
    wrapper: Some(INDEX_WRAPPER),
};

/// A linked wrapper holds entries, not another wrapper.
const WRAPPED_LAYOUT: Layout = Layout {
    skip: |key| is_index_metadata(key) || key == INDEX_WRAPPER,
    wrapper: None,
};

const REGISTRY_LAYOUT: Layout = Layout {
    skip: |key| key == METADATA_KEY,
    wrapper: None,
};

/// Batches read from one registry node as its body arrives; it ends after the first error.
/// Dropping it stops the reading.
pub struct BatchStream<T> {
    inner: BoxStream<'static, Result<T, RelayError>>,
}

/// The entries of a type index: [`RelayClient::stream_type_index`].
pub type IndexStream = BatchStream<IndexBatch>;

/// The DIDs of the deletion registry: [`RelayClient::stream_deletion_registry`].
pub type RegistryStream = BatchStream<RegistryBatch>;

impl<T> Stream for BatchStream<T> {
    type Item = Result<T, RelayError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.poll_next_unpin(cx)
    }
}

impl<T> fmt::Debug for BatchStream<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BatchStream").finish_non_exhaustive()
    }
}

impl RelayClient {
    /// The entries of the type index `<root>:index:<record_type>`, in batches of at most `batch`
    /// (at least 1), parsed from the body as it arrives: memory stays flat in the index size.
    /// `Ok(None)` when the relay has no such index (404).
    ///
    /// An entry counts only when it names its own soul (DESIGN §3): inline `{soul, timestamp,
    /// …}` whose `soul` is its key, or a link to `<index>/<key>` whose node does (fetched while
    /// the batch is built, under the client's semaphore). Other entries are skipped into
    /// [`IndexBatch::rejected`]; `_…` and `oip:…` keys and `null` entries are no entries.
    /// Entries OIP wrapped under `data` count too, a linked wrapper being read after the index,
    /// so a soul listed in both places comes twice.
    ///
    /// # Errors
    /// [`RelayError::InvalidSoul`] when root or type cannot form a soul, or any [`RelayError`]
    /// of the request's head. The stream yields the errors of the body
    /// ([`RelayError::TooLarge`] past
    /// [`RelayOptions::max_index_bytes`](super::RelayOptions::max_index_bytes), a timeout, a
    /// body that is not the relay's envelope) and of link fetches, and ends after the first.
    pub async fn stream_type_index(
        &self,
        peer: &Url,
        root: &str,
        record_type: &str,
        batch: usize,
    ) -> Result<Option<IndexStream>, RelayError> {
        let index = type_index_soul(root, record_type)?;
        let batch = batch.max(1);
        let Some(body) = self.open_node(peer, &index, INDEX_LAYOUT, batch).await? else {
            return Ok(None);
        };
        let reader = IndexReader {
            client: self.clone(),
            peer: peer.clone(),
            batch,
            body,
        };
        let batches = stream::try_unfold(reader, |mut reader| async move {
            Ok(reader.next_batch().await?.map(|batch| (batch, reader)))
        });
        Ok(Some(BatchStream {
            inner: batches.boxed(),
        }))
    }

    /// The DIDs of the deletion registry (`oip:deleted:records:index`), streamed as
    /// [`stream_type_index`](Self::stream_type_index) streams an index: keys are DIDs marked
    /// `true` (or an object or link); `null` and `false` are unmarked, `_` is metadata, and
    /// anything else is skipped into [`RegistryBatch::rejected`]. `Ok(None)` when the relay has
    /// no registry (404).
    ///
    /// # Errors
    /// Any [`RelayError`] of the request's head; the stream yields the errors of the body and
    /// ends after the first.
    pub async fn stream_deletion_registry(
        &self,
        peer: &Url,
        batch: usize,
    ) -> Result<Option<RegistryStream>, RelayError> {
        let registry = deletion_index_soul();
        let Some(body) = self
            .open_node(peer, &registry, REGISTRY_LAYOUT, batch.max(1))
            .await?
        else {
            return Ok(None);
        };
        let batches = stream::try_unfold(body, |mut body| async move {
            Ok(next_registry_batch(&mut body)
                .await?
                .map(|batch| (batch, body)))
        });
        Ok(Some(BatchStream {
            inner: batches.boxed(),
        }))
    }

    /// Every record soul of a type index, collected from
    /// [`stream_type_index`](Self::stream_type_index): sorted, without duplicates; empty when the
    /// index does not exist.
    ///
    /// # Errors
    /// The first [`RelayError`] of the stream.
    pub async fn read_type_index(
        &self,
        peer: &Url,
        root: &str,
        record_type: &str,
    ) -> Result<TypeIndex, RelayError> {
        let mut index = TypeIndex::default();
        if let Some(mut batches) = self
            .stream_type_index(peer, root, record_type, COLLECT_BATCH)
            .await?
        {
            while let Some(batch) = batches.try_next().await? {
                index
                    .souls
                    .extend(batch.entries.into_iter().map(|entry| entry.soul));
                index.rejected.extend(batch.rejected);
            }
        }
        index.souls.sort();
        index.souls.dedup();
        Ok(index)
    }

    /// Every DID of the deletion registry, collected from
    /// [`stream_deletion_registry`](Self::stream_deletion_registry): sorted, without duplicates;
    /// empty when the relay has no registry.
    ///
    /// # Errors
    /// The first [`RelayError`] of the stream.
    pub async fn read_deletion_registry(&self, peer: &Url) -> Result<DeletionRegistry, RelayError> {
        let mut registry = DeletionRegistry::default();
        if let Some(mut batches) = self.stream_deletion_registry(peer, COLLECT_BATCH).await? {
            while let Some(batch) = batches.try_next().await? {
                registry.dids.extend(batch.dids);
                registry.rejected.extend(batch.rejected);
            }
        }
        registry.dids.sort();
        registry.dids.dedup();
        Ok(registry)
    }

    /// The deletion registry entry of `did` (`oip:deleted:records:<did>`): who marked it
    /// deleted, and when; `None` when the relay does not hold one.
    ///
    /// # Errors
    /// [`RelayError::InvalidSoul`] when the entry's soul would be too long; any [`RelayError`]
    /// of the `get`.
    pub async fn read_deletion_entry(
        &self,
        peer: &Url,
        did: &Did,
    ) -> Result<Option<DeletionEntry>, RelayError> {
        let entry = self.get(peer, &deletion_entry_soul(did)?).await?;
        Ok(entry.as_ref().map(DeletionEntry::from_node))
    }
}

/// A type index being read: its body, then the body of a linked wrapper, if any.
struct IndexReader {
    client: RelayClient,
    peer: Url,
    batch: usize,
    body: NodeBody,
}

impl IndexReader {
    /// The next batch holding at least one entry or rejection; `None` at the end.
    async fn next_batch(&mut self) -> Result<Option<IndexBatch>, RelayError> {
        loop {
            if let Some(entries) = self.body.next().await {
                let batch = self.interpret(entries?).await?;
                if !batch.entries.is_empty() || !batch.rejected.is_empty() {
                    return Ok(Some(batch));
                }
                continue;
            }
            let Some(wrapper) = self.body.wrapped() else {
                return Ok(None);
            };
            let opened = self
                .client
                .open_node(&self.peer, &wrapper, WRAPPED_LAYOUT, self.batch)
                .await?;
            match opened {
                Some(body) => self.body = body,
                None => return Ok(None),
            }
        }
    }

    /// Read raw entries; link entries are fetched, as many at once as the client allows, and
    /// each linked node is dropped as soon as it is read.
    async fn interpret(&self, raw: Entries) -> Result<IndexBatch, RelayError> {
        let mut batch = IndexBatch::default();
        let mut links = Vec::new();
        for (key, value) in raw.entries {
            match index_slot(&raw.node, &key, &value) {
                IndexSlot::Skip => {}
                IndexSlot::Entry(entry) => batch.entries.push(entry),
                IndexSlot::Link { soul, target } => links.push((soul, target)),
                IndexSlot::Rejected(rejected) => self.reject(&raw.node, &mut batch, rejected),
            }
        }
        let (client, peer) = (&self.client, &self.peer);
        let mut linked = stream::iter(links)
            .map(|(soul, target)| async move {
                let node = client.get_capped(peer, &target, MAX_ENTRY_NODE_BYTES).await;
                (soul, node)
            })
            .buffer_unordered(client.options().concurrency.max(1));
        while let Some((soul, node)) = linked.next().await {
            match node {
                Ok(Some((node, _))) => match named_entry(&soul, node.fields()) {
                    Some(entry) => batch.entries.push(entry),
                    None => self.reject(
                        &raw.node,
                        &mut batch,
                        Rejected::new(soul.as_str(), "linked node does not name its soul"),
                    ),
                },
                Ok(None) => self.reject(
                    &raw.node,
                    &mut batch,
                    Rejected::new(soul.as_str(), "linked node not found"),
                ),
                // One oversized entry must not stop the index for good.
                Err(RelayError::TooLarge { .. }) => self.reject(
                    &raw.node,
                    &mut batch,
                    Rejected::new(soul.as_str(), "linked node too large"),
                ),
                Err(err) => return Err(err),
            }
        }
        Ok(batch)
    }

    fn reject(&self, index: &Soul, batch: &mut IndexBatch, rejected: Rejected) {
        debug!(peer = %redacted(&self.peer), index = %index, key = %rejected.key, reason = rejected.reason, "type index entry rejected");
        batch.rejected.push(rejected.key);
    }
}

/// The next registry batch holding at least one DID or rejection; `None` at the end.
async fn next_registry_batch(body: &mut NodeBody) -> Result<Option<RegistryBatch>, RelayError> {
    while let Some(raw) = body.next().await {
        let mut batch = RegistryBatch::default();
        for (key, value) in raw?.entries {
            match registry_slot(&key, &value) {
                None => {}
                Some(Ok(did)) => batch.dids.push(did),
                Some(Err(rejected)) => {
                    debug!(key = %rejected.key, reason = rejected.reason, "deletion registry entry rejected");
                    batch.rejected.push(rejected.key);
                }
            }
        }
        if !batch.dids.is_empty() || !batch.rejected.is_empty() {
            return Ok(Some(batch));
        }
    }
    Ok(None)
}
