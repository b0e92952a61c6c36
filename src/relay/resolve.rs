//! Link following for one record (DESIGN §3): [`RelayClient::get_resolved`] and
//! [`RelayClient::read_record`]. The record is walked level by level: every link of a level is
//! fetched concurrently (bounded by the client's semaphore), and no future nests deeper than one
//! fetch, however deep the record. A visited-soul set makes a cycle or a repeated link cost one
//! fetch, and a [`RecordBudget`] of nodes and bytes bounds what any record can cost.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Mutex, MutexGuard, PoisonError};

use futures::future::try_join_all;
use serde_json::{Map, Value};
use tracing::{debug, warn};
use url::Url;

use super::node::parse_document_text;
use super::{
    Budget, DEFAULT_MAX_DEPTH, Field, METADATA_KEY, Node, Operation, RECORD_KEYS, RecordBudget,
    RecordNode, RelayClient, RelayError, classify,
};
use crate::domain::{Soul, redacted};

impl RelayClient {
    /// The node with every link replaced by the node it points to, down to `max_depth` levels
    /// (deeper links stay links). Sibling links are fetched concurrently, bounded by the client's
    /// semaphore. A link whose target is missing (404), or that leads to a node this read has
    /// already fetched (a cycle or a repeat), is an absent field: the key is dropped.
    ///
    /// # Errors
    /// The first [`RelayError`] of any fetch; [`RelayError::OverBudget`] as soon as the read
    /// needs more than [`RelayOptions::record_budget`](super::RelayOptions::record_budget).
    pub async fn get_resolved(
        &self,
        peer: &Url,
        soul: &Soul,
        max_depth: usize,
    ) -> Result<Option<Node>, RelayError> {
        let walk = Walk::new(self, peer, soul);
        let Some(node) = walk.root().await? else {
            return Ok(None);
        };
        let resolved = walk.resolve(node.into_fields(), max_depth).await?;
        Ok(Some(Node::new(soul.clone(), resolved.fields)))
    }

    /// The record at `soul` with its `data`, `oip` and `meta` links followed as
    /// [`get_resolved`](Self::get_resolved) follows them, within the same budget; `None` when the
    /// relay does not hold it. A `data` or `oip` stored as JSON text is parsed first, so links
    /// inside it are followed too. Check [`RecordNode::deleted`] and [`RecordNode::partial`]
    /// before indexing.
    ///
    /// # Errors
    /// Any [`RelayError`] of the record or of a child; [`RelayError::OverBudget`] for a record
    /// whose links need more than its budget.
    pub async fn read_record(
        &self,
        peer: &Url,
        soul: &Soul,
    ) -> Result<Option<RecordNode>, RelayError> {
        let walk = Walk::new(self, peer, soul);
        let Some(node) = walk.root().await? else {
            return Ok(None);
        };
        let mut fields = node.into_fields();
        let mut children: Map<String, Value> = RECORD_KEYS
            .iter()
            .filter_map(|key| fields.remove(*key).map(|value| ((*key).to_owned(), value)))
            .collect();
        parse_document_text(&mut children);
        let resolved = walk.resolve(children, DEFAULT_MAX_DEPTH).await?;
        fields.extend(resolved.fields);
        Ok(Some(RecordNode::from_resolved(
            Node::new(soul.clone(), fields),
            &resolved.dropped,
        )))
    }
}

/// One record read: where it reads, what it has fetched, and what it may still fetch.
struct Walk<'a> {
    client: &'a RelayClient,
    peer: &'a Url,
    record: &'a Soul,
    budget: RecordBudget,
    spent: Mutex<Spent>,
}

/// What a walk has used so far. Sibling fetches run concurrently, so it sits behind a lock that
/// is never held across an await.
#[derive(Default)]
struct Spent {
    /// Every soul fetched or being fetched: a link to one of these is not followed again.
    visited: HashSet<Soul>,
    nodes: usize,
    bytes: usize,
}

/// A link found by a walk, waiting for the next level: where its node goes, and how many
/// levels may be followed from there.
struct Link {
    path: Vec<String>,
    target: Soul,
    depth: usize,
}

/// What scanning found: the links of the next level, and why top-level keys were dropped.
#[derive(Default)]
struct Found {
    links: Vec<Link>,
    dropped: BTreeMap<String, String>,
}

/// Fields after link following.
struct Resolved {
    fields: Map<String, Value>,
    /// For each top-level key that was dropped, why.
    dropped: BTreeMap<String, String>,
}

/// Why a link was not replaced by its node.
enum Dropped {
    /// The relay does not hold the target (404).
    NotFound(Soul),
    /// The target was already fetched, or is being fetched, for this record.
    Repeat(Soul),
    /// `{"#": x}` where `x` is not a soul.
    Unusable(String),
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dropped::NotFound(soul) => write!(f, "link to {soul} not found"),
            Dropped::Repeat(soul) => write!(f, "link to {soul} repeats a node of this record"),
            Dropped::Unusable(reason) => write!(f, "unusable link: {reason}"),
        }
    }
}

impl<'a> Walk<'a> {
    fn new(client: &'a RelayClient, peer: &'a Url, record: &'a Soul) -> Self {
        Self {
            client,
            peer,
            record,
            budget: client.options().record_budget,
            spent: Mutex::default(),
        }
    }

    /// The record node itself: the first node of the budget.
    async fn root(&self) -> Result<Option<Node>, RelayError> {
        self.claim(self.record);
        self.fetch(self.record).await
    }

    /// `fields` with every link replaced by its node, down to `depth` levels (deeper links stay
    /// links); what cannot or must not be followed is dropped. One level at a time: the links
    /// of a level are fetched together, and the first error cancels the others.
    async fn resolve(
        &self,
        mut fields: Map<String, Value>,
        depth: usize,
    ) -> Result<Resolved, RelayError> {
        let mut found = Found::default();
        self.scan(&mut fields, &mut Vec::new(), depth, &mut found);
        while !found.links.is_empty() {
            let level = std::mem::take(&mut found.links);
            let nodes = try_join_all(level.iter().map(|link| self.fetch(&link.target))).await?;
            for (link, node) in level.into_iter().zip(nodes) {
                let Link {
                    mut path,
                    target,
                    depth,
                } = link;
                match node {
                    Some(node) => {
                        let mut child = node.into_fields();
                        self.scan(&mut child, &mut path, depth - 1, &mut found);
                        if let Some(slot) = slot(&mut fields, &path) {
                            *slot = Value::Object(child);
                        }
                    }
                    None => {
                        self.drop_field(&path, &Dropped::NotFound(target), &mut found);
                        remove(&mut fields, &path);
                    }
                }
            }
        }
        Ok(Resolved {
            fields,
            dropped: found.dropped,
        })
    }

    /// Take stock of the map at `path`: drop `_`, queue its links in `found` (each stays in
    /// place until its node arrives), resolve its inline objects in place, and drop what cannot
    /// be followed or was already fetched.
    fn scan(
        &self,
        map: &mut Map<String, Value>,
        path: &mut Vec<String>,
        depth: usize,
        found: &mut Found,
    ) {
        map.remove(METADATA_KEY);
        map.retain(|key, value| {
            path.push(key.clone());
            let keep = self.scan_value(value, path, depth, found);
            path.pop();
            keep
        });
    }

    /// Whether `value`, at `path`, stays in the document.
    fn scan_value(
        &self,
        value: &mut Value,
        path: &mut Vec<String>,
        depth: usize,
        found: &mut Found,
    ) -> bool {
        match classify(value) {
            Field::Link(target) if depth > 0 => {
                if !self.claim(&target) {
                    self.drop_field(path, &Dropped::Repeat(target), found);
                    return false;
                }
                found.links.push(Link {
                    path: path.clone(),
                    target,
                    depth,
                });
                true
            }
            Field::Inline(_) if depth > 0 => {
                if let Value::Object(inner) = value {
                    self.scan(inner, path, depth - 1, found);
                }
                true
            }
            Field::BrokenLink(reason) => {
                self.drop_field(path, &Dropped::Unusable(reason), found);
                false
            }
            Field::Link(_) | Field::Inline(_) | Field::Null | Field::Scalar(_) => true,
        }
    }

    /// Log why the field at `path` is dropped, and keep the reason for a top-level key. A
    /// missing target or a repeat is an expected shape of GUN data; an unusable link is not.
    fn drop_field(&self, path: &[String], why: &Dropped, found: &mut Found) {
        let field = path.join(".");
        match why {
            Dropped::Unusable(_) => {
                warn!(peer = %redacted(self.peer), record = %self.record, field, reason = %why, "field dropped")
            }
            Dropped::NotFound(_) | Dropped::Repeat(_) => {
                debug!(peer = %redacted(self.peer), record = %self.record, field, reason = %why, "field dropped")
            }
        }
        if let [key] = path {
            found.dropped.insert(key.clone(), why.to_string());
        }
    }

    /// Mark `soul` as fetched for this record; `false` when it already was.
    fn claim(&self, soul: &Soul) -> bool {
        self.spent().visited.insert(soul.clone())
    }

    /// Fetch `soul` within what is left of the budget, and charge its body to it.
    async fn fetch(&self, soul: &Soul) -> Result<Option<Node>, RelayError> {
        let limit = self.reserve()?;
        let capped_by_budget = limit < self.client.options().max_response_bytes;
        match self.client.get_capped(self.peer, soul, limit).await {
            Ok(Some((node, bytes))) => {
                self.charge(bytes)?;
                Ok(Some(node))
            }
            Ok(None) => Ok(None),
            Err(RelayError::TooLarge { .. }) if capped_by_budget => Err(self.over(Budget::Bytes)),
            Err(err) => Err(err),
        }
    }

    /// Take one node of the budget before its request is sent; returns the most bytes its body
    /// may have. Fails once either bound is spent, so no request goes out past the budget.
    fn reserve(&self) -> Result<usize, RelayError> {
        let mut spent = self.spent();
        if spent.bytes > self.budget.max_bytes {
            return Err(self.over(Budget::Bytes));
        }
        if spent.nodes >= self.budget.max_nodes {
            return Err(self.over(Budget::Nodes));
        }
        spent.nodes += 1;
        Ok((self.budget.max_bytes - spent.bytes).min(self.client.options().max_response_bytes))
    }

    /// Count a body received. Concurrent siblings may each fit what was left when they were
    /// sent, yet not together: the one that tips the sum over fails.
    fn charge(&self, bytes: usize) -> Result<(), RelayError> {
        let mut spent = self.spent();
        spent.bytes = spent.bytes.saturating_add(bytes);
        if spent.bytes > self.budget.max_bytes {
            return Err(self.over(Budget::Bytes));
        }
        Ok(())
    }

    fn over(&self, budget: Budget) -> RelayError {
        RelayError::OverBudget {
            op: Operation::Get,
            target: self.record.to_string(),
            budget,
            limit: match budget {
                Budget::Nodes => self.budget.max_nodes,
                Budget::Bytes => self.budget.max_bytes,
            },
        }
    }

    fn spent(&self) -> MutexGuard<'_, Spent> {
        self.spent.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The value at `path` below `fields`, if the document still has one there.
fn slot<'m>(fields: &'m mut Map<String, Value>, path: &[String]) -> Option<&'m mut Value> {
    let (first, rest) = path.split_first()?;
    let mut value = fields.get_mut(first)?;
    for key in rest {
        value = value.as_object_mut()?.get_mut(key)?;
    }
    Some(value)
}

/// Remove the value at `path` below `fields`.
fn remove(fields: &mut Map<String, Value>, path: &[String]) {
    let Some((last, parent)) = path.split_last() else {
        return;
    };
    let parent = if parent.is_empty() {
        Some(fields)
    } else {
        slot(fields, parent).and_then(Value::as_object_mut)
    };
    if let Some(parent) = parent {
        parent.remove(last);
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn path(keys: &[&str]) -> Vec<String> {
        keys.iter().map(|k| (*k).to_owned()).collect()
    }

    #[test]
    fn paths_reach_and_remove_nested_values_only_where_they_exist() {
        let document = json!({"a": {"b": {"c": 1, "d": 2}}, "e": 3});
        let cases: &[(&[&str], Option<Value>, Value)] = &[
            (
                &["a", "b", "c"],
                Some(json!(1)),
                json!({"a": {"b": {"d": 2}}, "e": 3}),
            ),
            (
                &["e"],
                Some(json!(3)),
                json!({"a": {"b": {"c": 1, "d": 2}}}),
            ),
            (&["e", "x"], None, document.clone()),
            (&["a", "zz", "c"], None, document.clone()),
            (&[], None, document.clone()),
        ];
        for (keys, found, after) in cases {
            let mut fields = document.as_object().unwrap().clone();
            assert_eq!(slot(&mut fields, &path(keys)).cloned(), *found, "{keys:?}");
            remove(&mut fields, &path(keys));
            assert_eq!(Value::Object(fields), *after, "{keys:?}");
        }
    }
}
