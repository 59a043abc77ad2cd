//! The element tree a snapshot is built in: an arena of nodes, each holding one
//! ElementDefinition (JSON object), its child elements and its slices (re-slices
//! hang under their slice). Owns building a tree from a flat `snapshot.element`
//! list, grafting a datatype's/profile's elements under a node, cloning a node
//! into a new slice, and flattening back into snapshot order.
//! Must not: apply differential constraints (merge.rs) or resolve canonicals.

use crate::conformance::element_path::{parse_id, reroot};
use serde_json::{Map, Value};
use std::collections::HashMap;

pub type NodeId = usize;

#[derive(Debug, Clone)]
pub struct Node {
    pub elem: Map<String, Value>,
    pub children: Vec<NodeId>,
    pub slices: Vec<NodeId>,
    /// `min`/`max` as inherited, before this profile constrained the element
    /// (new slices start from these, not from the whole element's cardinality).
    pub inherited_cardinality: Option<(Option<Value>, Option<Value>)>,
    /// Slice created for a renamed choice (`valueQuantity`).
    pub choice_rename: bool,
}

impl Node {
    fn new(elem: Map<String, Value>) -> Self {
        Node {
            elem,
            children: Vec::new(),
            slices: Vec::new(),
            inherited_cardinality: None,
            choice_rename: false,
        }
    }

    pub fn id(&self) -> &str {
        self.elem.get("id").and_then(Value::as_str).unwrap_or("")
    }

    pub fn path(&self) -> &str {
        self.elem.get("path").and_then(Value::as_str).unwrap_or("")
    }
}

#[derive(Debug, Clone, Default)]
pub struct Tree {
    pub nodes: Vec<Node>,
}

/// Why a flat element list could not be arranged as a tree.
#[derive(Debug, Clone)]
pub struct TreeError {
    pub element: String,
    pub reason: String,
}

fn element_id(e: &Map<String, Value>) -> String {
    if let Some(id) = e.get("id").and_then(Value::as_str) {
        return id.to_string();
    }
    let path = e.get("path").and_then(Value::as_str).unwrap_or("");
    match e.get("sliceName").and_then(Value::as_str) {
        Some(s) => format!("{path}:{s}"),
        None => path.to_string(),
    }
}

/// Where an element id hangs: `Slice(parent)` for `A.b:s` (slice of `A.b`) or
/// `A.b:s/t` (re-slice of `A.b:s`), `Child(parent)` for `A.b:s.c`.
enum Attach {
    Slice(String),
    Child(String),
}

fn attach_point(id: &str) -> Option<Attach> {
    let segs = parse_id(id);
    let last = segs.last()?;
    if let Some(slice) = &last.slice {
        let head = &id[..id.len() - slice.len() - 1];
        return Some(match slice.rsplit_once('/') {
            Some((parent_slice, _)) => Attach::Slice(format!("{head}:{parent_slice}")),
            None => Attach::Slice(head.to_string()),
        });
    }
    let cut = id.rfind('.')?;
    Some(Attach::Child(id[..cut].to_string()))
}

impl Tree {
    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id]
    }

    pub fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes[id]
    }

    /// Build from a flat snapshot element list (element 0 is the root).
    pub fn from_elements(elements: &[Value]) -> Result<Tree, TreeError> {
        let mut tree = Tree::default();
        let mut iter = elements.iter();
        let root = iter
            .next()
            .and_then(Value::as_object)
            .ok_or_else(|| TreeError {
                element: String::new(),
                reason: "snapshot has no root element".into(),
            })?;
        let mut root = root.clone();
        let root_id = element_id(&root);
        root.insert("id".into(), Value::String(root_id.clone()));
        tree.nodes.push(Node::new(root));
        let mut index = HashMap::new();
        index.insert(root_id, 0);
        tree.attach_all(iter.cloned().collect(), &mut index)?;
        Ok(tree)
    }

    fn attach_all(
        &mut self,
        elements: Vec<Value>,
        index: &mut HashMap<String, NodeId>,
    ) -> Result<(), TreeError> {
        for e in elements {
            let Value::Object(mut e) = e else {
                return Err(TreeError {
                    element: String::new(),
                    reason: "element is not a JSON object".into(),
                });
            };
            let id = element_id(&e);
            e.insert("id".into(), Value::String(id.clone()));
            let attach = attach_point(&id).ok_or_else(|| TreeError {
                element: id.clone(),
                reason: "element id has no parent".into(),
            })?;
            let (parent_id, is_slice) = match attach {
                Attach::Slice(p) => (p, true),
                Attach::Child(p) => (p, false),
            };
            let parent = *index.get(&parent_id).ok_or_else(|| TreeError {
                element: id.clone(),
                reason: format!("parent element {parent_id} is not listed before it"),
            })?;
            let nid = self.nodes.len();
            self.nodes.push(Node::new(e));
            if is_slice {
                self.nodes[parent].slices.push(nid);
            } else {
                self.nodes[parent].children.push(nid);
            }
            index.insert(id, nid);
        }
        Ok(())
    }

    /// Graft the elements of another snapshot (a datatype or profile, root at
    /// `elements[0]`) as the children of `target`, re-rooting ids and paths.
    /// The grafted elements keep their `base`.
    pub fn graft(&mut self, target: NodeId, elements: &[Value]) -> Result<(), TreeError> {
        let Some(root) = elements.first().and_then(Value::as_object) else {
            return Ok(());
        };
        let old_id = element_id(root);
        let old_path = root
            .get("path")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let new_id = self.nodes[target].id().to_string();
        let new_path = self.nodes[target].path().to_string();
        let mut moved = Vec::with_capacity(elements.len().saturating_sub(1));
        for e in &elements[1..] {
            let Some(obj) = e.as_object() else { continue };
            let mut obj = obj.clone();
            let id = element_id(&obj);
            let path = obj
                .get("path")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let (Some(id), Some(path)) = (
                reroot(&id, &old_id, &new_id),
                reroot(&path, &old_path, &new_path),
            ) else {
                return Err(TreeError {
                    element: id,
                    reason: format!("element is not under the root {old_id}"),
                });
            };
            obj.insert("id".into(), Value::String(id));
            obj.insert("path".into(), Value::String(path));
            moved.push(Value::Object(obj));
        }
        let mut index = HashMap::new();
        index.insert(new_id, target);
        self.attach_all(moved, &mut index)
    }

    /// Deep-copy the subtree of `src` (children and slices) with ids re-rooted
    /// from `src`'s id to `new_id`; returns the new node (not attached).
    pub fn copy_subtree(&mut self, src: NodeId, new_id: &str, with_slices: bool) -> NodeId {
        let old_id = self.nodes[src].id().to_string();
        let mut node = self.nodes[src].clone();
        node.elem
            .insert("id".into(), Value::String(new_id.to_string()));
        node.children.clear();
        node.slices.clear();
        let nid = self.nodes.len();
        self.nodes.push(node);
        let src_children = self.nodes[src].children.clone();
        for c in src_children {
            let cid = self.nodes[c].id().to_string();
            let child_new = reroot(&cid, &old_id, new_id).unwrap_or(cid);
            let copy = self.copy_subtree(c, &child_new, true);
            self.nodes[nid].children.push(copy);
        }
        if with_slices {
            let src_slices = self.nodes[src].slices.clone();
            for s in src_slices {
                let sid = self.nodes[s].id().to_string();
                let slice_new = reroot(&sid, &old_id, new_id).unwrap_or(sid);
                let copy = self.copy_subtree(s, &slice_new, true);
                self.nodes[nid].slices.push(copy);
            }
        }
        nid
    }

    /// Find the unsliced child of `parent` with the given last path name.
    pub fn child_named(&self, parent: NodeId, name: &str) -> Option<NodeId> {
        self.nodes[parent]
            .children
            .iter()
            .copied()
            .find(|&c| crate::conformance::element_path::last_name(self.nodes[c].path()) == name)
    }

    /// Find a slice of `node` by its full slice name (`a` or `a/b`).
    pub fn slice_named(&self, node: NodeId, slice: &str) -> Option<NodeId> {
        self.nodes[node]
            .slices
            .iter()
            .copied()
            .find(|&s| self.nodes[s].elem.get("sliceName").and_then(Value::as_str) == Some(slice))
    }

    /// Snapshot order: element, its children, then its slices (each with theirs).
    pub fn flatten(&self) -> Vec<Value> {
        let mut out = Vec::with_capacity(self.nodes.len());
        if !self.nodes.is_empty() {
            self.flatten_into(0, &mut out);
        }
        out
    }

    /// Snapshot order, moving the elements out of the tree (no copies).
    pub fn into_elements(mut self) -> Vec<Value> {
        let mut order = Vec::with_capacity(self.nodes.len());
        let mut stack = vec![0];
        while let Some(id) = stack.pop() {
            let Some(n) = self.nodes.get(id) else {
                continue;
            };
            order.push(id);
            stack.extend(n.slices.iter().rev());
            stack.extend(n.children.iter().rev());
        }
        order
            .into_iter()
            .map(|id| Value::Object(std::mem::take(&mut self.nodes[id].elem)))
            .collect()
    }

    fn flatten_into(&self, id: NodeId, out: &mut Vec<Value>) {
        let n = &self.nodes[id];
        out.push(Value::Object(n.elem.clone()));
        for &c in &n.children {
            self.flatten_into(c, out);
        }
        for &s in &n.slices {
            self.flatten_into(s, out);
        }
    }

    /// Depth-first list of every node reachable from the root.
    pub fn walk(&self) -> Vec<NodeId> {
        let mut out = Vec::new();
        let mut stack = vec![0];
        while let Some(id) = stack.pop() {
            if id >= self.nodes.len() {
                continue;
            }
            out.push(id);
            let n = &self.nodes[id];
            stack.extend(n.slices.iter().rev());
            stack.extend(n.children.iter().rev());
        }
        out
    }
}
