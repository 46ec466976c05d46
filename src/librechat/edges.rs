//! Agents chain into each other through handoff `edges: [{from, to, …}]`, whose endpoints are
//! an agent `id` string or a list of them. When agents are deleted, LibreChat's
//! `removeAgentIdsFromEdges` takes their ids out of every other agent's edges and drops the
//! edges left without an end; this does the same.

use std::collections::HashSet;

use mongodb::bson::{doc, Bson, DateTime, Document};

use super::deadline::{DrainFind, MongoCall};
use super::error::StoreError;
use super::Store;

/// Sweeps over the graphs before giving up when they keep changing under us; the reconcile
/// is retried, and every sweep's writes stand.
const SWEEPS: usize = 5;

/// An endpoint without the removed ids: a list loses them, a single removed id becomes null.
fn prune_endpoint(endpoint: Option<&Bson>, removed: &HashSet<&str>) -> Bson {
    let gone = |b: &Bson| b.as_str().is_some_and(|id| removed.contains(id));
    match endpoint {
        Some(Bson::Array(ids)) => Bson::Array(ids.iter().filter(|b| !gone(b)).cloned().collect()),
        Some(b) if gone(b) => Bson::Null,
        Some(b) => b.clone(),
        None => Bson::Null,
    }
}

fn has_endpoint(endpoint: &Bson) -> bool {
    match endpoint {
        Bson::Array(ids) => !ids.is_empty(),
        Bson::Null => false,
        _ => true,
    }
}

/// The edges that survive removing `removed`, with those ids pruned from their endpoints and
/// every other field of the edge kept.
pub fn prune_edges(edges: &[Bson], removed: &HashSet<&str>) -> Vec<Bson> {
    edges
        .iter()
        .filter_map(|edge| {
            let mut edge = edge.as_document()?.clone();
            let from = prune_endpoint(edge.get("from"), removed);
            let to = prune_endpoint(edge.get("to"), removed);
            if !(has_endpoint(&from) && has_endpoint(&to)) {
                return None;
            }
            edge.insert("from", from);
            edge.insert("to", to);
            Some(Bson::Document(edge))
        })
        .collect()
}

impl Store {
    /// Removes `agent_ids` from every agent's handoff edges. Each agent is rewritten behind a
    /// compare-and-set on the edges it was read with, so a concurrent edit in LibreChat is never
    /// overwritten; a changed agent is read again on the next sweep. Returns the agents changed.
    pub async fn prune_handoff_edges(&self, agent_ids: &[String]) -> Result<u64, StoreError> {
        if agent_ids.is_empty() {
            return Ok(0);
        }
        let removed: HashSet<&str> = agent_ids.iter().map(String::as_str).collect();
        let referencing = doc! { "$or": [
            { "edges.from": { "$in": agent_ids } },
            { "edges.to": { "$in": agent_ids } },
        ] };
        let agents = self.collection(super::owned::AGENTS.collection);
        let mut changed = 0;
        for _ in 0..SWEEPS {
            let graphs: Vec<Document> = agents
                .find(referencing.clone())
                .projection(doc! { "_id": 1, "edges": 1 })
                .drain("reading agent handoff edges")
                .await?;
            if graphs.is_empty() {
                return Ok(changed);
            }
            for graph in graphs {
                let (Some(id), Ok(edges)) = (graph.get("_id"), graph.get_array("edges")) else {
                    continue;
                };
                let pruned = prune_edges(edges, &removed);
                changed += agents
                    .update_one(
                        doc! { "_id": id, "edges": edges },
                        doc! { "$set": { "edges": pruned, "updatedAt": DateTime::now() } },
                    )
                    .deadline("removing deleted agents from handoff edges")
                    .await?
                    .modified_count;
            }
        }
        Err(StoreError::Contended(
            "agent handoff edges kept changing while deleted agents were removed from them",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn removed() -> HashSet<&'static str> {
        ["agent_gone", "agent_also_gone"].into_iter().collect()
    }

    #[test]
    fn single_endpoints_that_are_removed_drop_the_edge() {
        let edges = [
            Bson::Document(doc! { "from": "agent_a", "to": "agent_gone", "edgeType": "handoff" }),
            Bson::Document(doc! { "from": "agent_gone", "to": "agent_b" }),
            Bson::Document(doc! { "from": "agent_a", "to": "agent_b", "description": "kept" }),
        ];
        assert_eq!(
            prune_edges(&edges, &removed()),
            vec![Bson::Document(
                doc! { "from": "agent_a", "to": "agent_b", "description": "kept" }
            )]
        );
    }

    #[test]
    fn lists_lose_the_removed_ids_and_empty_lists_drop_the_edge() {
        let edges = [
            Bson::Document(
                doc! { "from": ["agent_a", "agent_gone"], "to": "agent_b", "prompt": "p" },
            ),
            Bson::Document(doc! { "from": "agent_a", "to": ["agent_gone", "agent_also_gone"] }),
        ];
        assert_eq!(
            prune_edges(&edges, &removed()),
            vec![Bson::Document(
                doc! { "from": ["agent_a"], "to": "agent_b", "prompt": "p" }
            )]
        );
    }

    #[test]
    fn edges_without_an_end_or_not_documents_are_dropped() {
        let edges = [
            Bson::Document(doc! { "from": "agent_a" }),
            Bson::Document(doc! { "from": Bson::Null, "to": "agent_b" }),
            Bson::String("agent_a".into()),
        ];
        assert!(prune_edges(&edges, &removed()).is_empty());
    }
}
