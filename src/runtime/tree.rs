//! The actor tree as a pure structure: who exists, who is whose parent, what state each is
//! in. No processes, sockets or clocks here; the engine drives it.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::proto::{ActorId, Exit, ExitReason};

/// Progress of an actor's teardown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelState {
    None,
    /// Asked for; waiting until the actor and its descendants are out of the debugger.
    Pending,
    /// Cancel frame sent; SIGTERM follows after the grace period.
    Requested,
    /// SIGTERM sent; SIGKILL follows after the grace period.
    Terminated,
    Killed,
}

/// One actor.
#[derive(Debug, Clone)]
pub struct ActorNode {
    pub id: ActorId,
    pub name: String,
    pub pid: u32,
    pub parent: Option<ActorId>,
    pub children: Vec<ActorId>,
    /// Started by the root on its own PTY (so the root reaps it and owns its process group).
    pub spawned: bool,
    pub connected: bool,
    /// What the actor announced before exiting (`exiting` frame): why, and with what code.
    pub exit_reason: Option<ExitReason>,
    pub announced_code: Option<i32>,
    pub exited: Option<Exit>,
    pub cancel: CancelState,
    /// Set once the "teardown waits" event went out, so it is reported once per wait.
    pub teardown_waiting: bool,
}

impl ActorNode {
    /// Still has a process or a connection the run must wait for.
    pub fn is_live(&self) -> bool {
        if self.spawned {
            self.exited.is_none()
        } else {
            self.connected
        }
    }
}

/// How many gone actors that connected on their own are remembered (for the console and
/// for `child_exited` lookups); older ones are forgotten, so a peer reconnecting in a loop
/// cannot grow the tree without bound.
pub const KEEP_GONE: usize = 1000;

/// All actors of the run, including exited ones (the console shows them).
#[derive(Debug, Default)]
pub struct ActorTree {
    nodes: BTreeMap<ActorId, ActorNode>,
    /// Every actor of each pid, oldest first: one process may have several (a spawned
    /// actor and extra connections it opened), and losing one must not hide the others.
    by_pid: HashMap<u32, Vec<ActorId>>,
    /// Gone actors that connected on their own, oldest first (see [`KEEP_GONE`]).
    gone: VecDeque<ActorId>,
    last_id: u64,
}

impl ActorTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next id for an actor that does not exist yet (a process about to be
    /// spawned carries it in its environment); [`ActorTree::add_reserved`] adds it. An id
    /// whose spawn failed is never used.
    pub fn reserve_id(&mut self) -> ActorId {
        self.last_id += 1;
        ActorId(self.last_id)
    }

    /// Adds an actor and returns its id (1, 2, ... in order of arrival).
    pub fn add(&mut self, name: &str, pid: u32, parent: Option<ActorId>, spawned: bool) -> ActorId {
        let id = self.reserve_id();
        self.add_reserved(id, name, pid, parent, spawned);
        id
    }

    /// Adds the actor of an id from [`ActorTree::reserve_id`].
    pub fn add_reserved(
        &mut self,
        id: ActorId,
        name: &str,
        pid: u32,
        parent: Option<ActorId>,
        spawned: bool,
    ) {
        if let Some(p) = parent.and_then(|p| self.nodes.get_mut(&p)) {
            p.children.push(id);
        }
        self.nodes.insert(
            id,
            ActorNode {
                id,
                name: name.to_owned(),
                pid,
                parent,
                children: Vec::new(),
                spawned,
                connected: false,
                exit_reason: None,
                announced_code: None,
                exited: None,
                cancel: CancelState::None,
                teardown_waiting: false,
            },
        );
        self.by_pid.entry(pid).or_default().push(id);
    }

    pub fn get(&self, id: ActorId) -> Option<&ActorNode> {
        self.nodes.get(&id)
    }

    pub fn get_mut(&mut self, id: ActorId) -> Option<&mut ActorNode> {
        self.nodes.get_mut(&id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &ActorNode> {
        self.nodes.values()
    }

    /// The oldest live actor with this pid, if any.
    pub fn live_by_pid(&self, pid: u32) -> Option<&ActorNode> {
        self.by_pid
            .get(&pid)?
            .iter()
            .filter_map(|n| self.nodes.get(n))
            .find(|n| n.is_live())
    }

    /// [`ActorTree::nearest_ancestor`] over a recorded chain of parent pids (`ancestry[0]`
    /// is `pid`'s parent, `ancestry[1]` its grandparent, ...), for callers that must not
    /// read `/proc` themselves.
    pub fn nearest_ancestor_in(&self, pid: u32, ancestry: &[u32]) -> Option<ActorId> {
        let mut chain = std::iter::once(pid).chain(ancestry.iter().copied());
        let mut next: HashMap<u32, u32> = HashMap::new();
        if let Some(mut prev) = chain.next() {
            for p in chain {
                next.insert(prev, p);
                prev = p;
            }
        }
        self.nearest_ancestor(pid, |p| next.get(&p).copied())
    }

    /// The nearest live actor among `pid` itself (a process that connects twice) and its
    /// ancestors, walking parent pids with `ppid_of`.
    pub fn nearest_ancestor(
        &self,
        pid: u32,
        mut ppid_of: impl FnMut(u32) -> Option<u32>,
    ) -> Option<ActorId> {
        if let Some(n) = self.live_by_pid(pid) {
            return Some(n.id);
        }
        let mut cur = pid;
        // Bounded: pid chains end at 1, but a racing /proc read must not loop forever.
        for _ in 0..64 {
            cur = ppid_of(cur)?;
            if cur <= 1 {
                return None;
            }
            if let Some(n) = self.live_by_pid(cur) {
                return Some(n.id);
            }
        }
        None
    }

    /// `id` and all its descendants, parents before children.
    pub fn subtree(&self, id: ActorId) -> Vec<ActorId> {
        let mut out = Vec::new();
        let mut stack = vec![id];
        while let Some(cur) = stack.pop() {
            if let Some(n) = self.get(cur) {
                stack.extend(n.children.iter().rev().copied());
                out.push(cur);
            }
        }
        out
    }

    /// `id` followed by its ancestors up to the top.
    pub fn lineage(&self, id: ActorId) -> Vec<ActorId> {
        let mut out = Vec::new();
        let mut cur = Some(id);
        while let Some(c) = cur {
            cur = self.get(c).and_then(|n| n.parent);
            out.push(c);
            if out.len() > self.nodes.len() {
                break;
            }
        }
        out
    }

    /// Records that `id`, an actor that connected on its own, is gone; forgets the oldest
    /// such actor past [`KEEP_GONE`] (one with live children is kept). Returns the forgotten id.
    pub fn retire(&mut self, id: ActorId) -> Option<ActorId> {
        self.gone.push_back(id);
        if self.gone.len() <= KEEP_GONE {
            return None;
        }
        let old = self.gone.pop_front()?;
        let has_live_children = self.nodes.get(&old).is_some_and(|n| {
            n.children
                .iter()
                .any(|c| self.nodes.get(c).is_some_and(ActorNode::is_live))
        });
        if has_live_children {
            return None;
        }
        let node = self.nodes.remove(&old)?;
        if let Some(p) = node.parent.and_then(|p| self.nodes.get_mut(&p)) {
            p.children.retain(|c| *c != old);
        }
        if let Some(ids) = self.by_pid.get_mut(&node.pid) {
            ids.retain(|i| *i != old);
            if ids.is_empty() {
                self.by_pid.remove(&node.pid);
            }
        }
        Some(old)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn any_live(&self) -> bool {
        self.nodes.values().any(ActorNode::is_live)
    }

    /// Ids of every live actor, in id order (parents before children).
    pub fn live_ids(&self) -> Vec<ActorId> {
        self.nodes
            .values()
            .filter(|n| n.is_live())
            .map(|n| n.id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subtree_and_lineage_follow_parent_links() {
        let mut t = ActorTree::new();
        let top = t.add("top", 10, None, true);
        let mid = t.add("mid", 11, Some(top), true);
        let leaf = t.add("leaf", 12, Some(mid), true);
        let other = t.add("other", 13, Some(top), true);
        assert_eq!(t.subtree(mid), vec![mid, leaf]);
        assert_eq!(t.subtree(top), vec![top, mid, leaf, other]);
        assert_eq!(t.lineage(leaf), vec![leaf, mid, top]);
    }

    #[test]
    fn only_the_canonical_spelling_names_an_actor() {
        assert_eq!("1".parse::<ActorId>(), Ok(ActorId(1)));
        assert_eq!("10".parse::<ActorId>(), Ok(ActorId(10)));
        assert_eq!("0".parse::<ActorId>(), Ok(ActorId(0)));
        for alias in [
            "01",
            "+1",
            " 1",
            "1 ",
            "0x1",
            "",
            "-1",
            "18446744073709551616",
        ] {
            assert!(alias.parse::<ActorId>().is_err(), "{alias:?}");
        }
        assert_eq!(ActorId(7).to_string(), "7");
    }

    #[test]
    fn a_pid_with_several_actors_keeps_its_oldest_live_one() {
        let mut t = ActorTree::new();
        let first = t.add("proc", 50, None, true);
        let extra = t.add("extra", 50, Some(first), false);
        t.get_mut(extra).expect("extra").connected = true;
        assert_eq!(t.live_by_pid(50).map(|n| n.id), Some(first));
        // The extra connection goes away: the process is still the first actor.
        t.get_mut(extra).expect("extra").connected = false;
        assert_eq!(t.live_by_pid(50).map(|n| n.id), Some(first));
        assert_eq!(t.nearest_ancestor_in(77, &[50, 1]), Some(first));
    }

    #[test]
    fn gone_self_connected_actors_are_forgotten_past_the_cap() {
        let mut t = ActorTree::new();
        let top = t.add("top", 1, None, true);
        for i in 0..(KEEP_GONE as u32 + 500) {
            let id = t.add("peer", 1000 + i, Some(top), false);
            t.retire(id);
        }
        assert_eq!(
            t.len(),
            KEEP_GONE + 1,
            "the newest gone ones and the live top"
        );
        assert!(t.get(top).expect("top").children.len() <= KEEP_GONE);
        assert!(t.live_by_pid(1).is_some());
    }

    #[test]
    fn reserved_ids_are_never_reused() {
        let mut t = ActorTree::new();
        let a = t.reserve_id();
        let b = t.reserve_id();
        t.add_reserved(b, "b", 2, None, true);
        assert!(t.get(a).is_none(), "a failed spawn leaves a gap");
        assert_eq!(t.add("c", 3, None, false), ActorId(3));
    }

    #[test]
    fn unspawned_process_lands_under_nearest_live_ancestor() {
        let mut t = ActorTree::new();
        let top = t.add("top", 100, None, true);
        let ppids = HashMap::from([(300, 200), (200, 100), (100, 1)]);
        assert_eq!(
            t.nearest_ancestor(300, |p| ppids.get(&p).copied()),
            Some(top)
        );
        t.get_mut(top).expect("exists").exited = Some(Exit {
            code: Some(0),
            ..Exit::default()
        });
        assert_eq!(t.nearest_ancestor(300, |p| ppids.get(&p).copied()), None);
    }
}
