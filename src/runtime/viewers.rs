//! Who is attached to the run and who drives: a pure struct the core owns. An attached
//! viewer is an observer or the driver; at most one viewer drives at a time, and driving
//! changes hands only when somebody asks (a take-over, a hand-over, the driver leaving).
//! The root's own front end is not a viewer: whoever started the run can always act.

use std::collections::BTreeMap;

use super::core::ConnId;
use super::event::ViewerRole;
use crate::proto::RuntimeCommand;

/// Viewers attached at once, past which `attach` is refused (each one gets every event).
pub const MAX_VIEWERS: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Viewer {
    pub name: String,
    pub pid: Option<u32>,
    pub role: ViewerRole,
    /// False for a viewer whose ticket is an observer's: it can never drive.
    pub may_drive: bool,
}

/// One viewer's role changed (or it came, or left: [`ViewerRole::Gone`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub conn: ConnId,
    pub name: String,
    pub pid: Option<u32>,
    pub role: ViewerRole,
}

#[derive(Debug, Default)]
pub struct Viewers {
    list: BTreeMap<ConnId, Viewer>,
    driver: Option<ConnId>,
}

/// What `attach` did: the changes to announce, and a word for the newcomer when it asked to
/// drive and was made an observer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attached {
    pub changes: Vec<Change>,
    pub note: Option<String>,
}

impl Viewers {
    pub fn get(&self, conn: ConnId) -> Option<&Viewer> {
        self.list.get(&conn)
    }

    pub fn is_viewer(&self, conn: ConnId) -> bool {
        self.list.contains_key(&conn)
    }

    pub fn driver(&self) -> Option<ConnId> {
        self.driver
    }

    fn change(&self, conn: ConnId, role: ViewerRole) -> Change {
        let v = self.list.get(&conn);
        Change {
            conn,
            name: v.map(|v| v.name.clone()).unwrap_or_default(),
            pid: v.and_then(|v| v.pid),
            role,
        }
    }

    fn describe(&self, conn: ConnId) -> String {
        match self.list.get(&conn) {
            Some(v) => format!("viewer {conn} ({})", v.name),
            None => format!("viewer {conn}"),
        }
    }

    /// A new viewer. Refused (an error for it) past [`MAX_VIEWERS`].
    pub fn attach(
        &mut self,
        conn: ConnId,
        name: String,
        pid: Option<u32>,
        driver: bool,
        take_over: bool,
        may_drive: bool,
    ) -> Result<Attached, String> {
        if self.list.contains_key(&conn) {
            return Err("attach sent twice".into());
        }
        if self.list.len() >= MAX_VIEWERS {
            return Err(format!(
                "{MAX_VIEWERS} viewers are attached already; detach one first"
            ));
        }
        self.list.insert(
            conn,
            Viewer {
                name,
                pid,
                role: ViewerRole::Observer,
                may_drive,
            },
        );
        let mut changes = vec![self.change(conn, ViewerRole::Observer)];
        let mut note = None;
        if driver {
            match self.drive(conn, take_over) {
                Ok(more) => {
                    // The newcomer's own entry says driver at once, not observer first.
                    changes.retain(|c| c.conn != conn);
                    changes.extend(more);
                }
                Err(e) => note = Some(e),
            }
        }
        Ok(Attached { changes, note })
    }

    /// `conn` asks to drive. Granted if nobody drives or `take_over`; the one who drove
    /// becomes an observer.
    pub fn drive(&mut self, conn: ConnId, take_over: bool) -> Result<Vec<Change>, String> {
        if self.list.get(&conn).is_some_and(|v| !v.may_drive) {
            return Err("this viewer came with an observer's ticket: it cannot drive".into());
        }
        match self.driver {
            Some(d) if d == conn => Ok(Vec::new()),
            Some(d) if !take_over => Err(format!(
                "{} drives; take over explicitly (attach --take-over, or D twice in the console)",
                self.describe(d)
            )),
            prev => {
                let mut out = Vec::new();
                if let Some(d) = prev {
                    if let Some(v) = self.list.get_mut(&d) {
                        v.role = ViewerRole::Observer;
                    }
                    out.push(self.change(d, ViewerRole::Observer));
                }
                let Some(v) = self.list.get_mut(&conn) else {
                    return Err("not attached".into());
                };
                v.role = ViewerRole::Driver;
                self.driver = Some(conn);
                out.push(self.change(conn, ViewerRole::Driver));
                Ok(out)
            }
        }
    }

    /// The driver gives driving up; nobody drives until somebody asks.
    pub fn observe(&mut self, conn: ConnId) -> Vec<Change> {
        if self.driver != Some(conn) {
            return Vec::new();
        }
        self.driver = None;
        if let Some(v) = self.list.get_mut(&conn) {
            v.role = ViewerRole::Observer;
        }
        vec![self.change(conn, ViewerRole::Observer)]
    }

    /// The driver `conn` hands driving to viewer `to`, which must be attached and allowed
    /// to drive.
    pub fn hand_over(&mut self, conn: ConnId, to: ConnId) -> Result<Vec<Change>, String> {
        if self.driver != Some(conn) {
            return Err("hand over: you do not drive".into());
        }
        match self.list.get(&to) {
            None => return Err(format!("hand over: no viewer {to}")),
            Some(v) if !v.may_drive => {
                return Err(format!(
                    "hand over: viewer {to} came with an observer's ticket"
                ));
            }
            Some(_) => {}
        }
        self.drive(to, true)
    }

    /// A viewer left (or its connection died).
    pub fn detach(&mut self, conn: ConnId) -> Vec<Change> {
        if !self.list.contains_key(&conn) {
            return Vec::new();
        }
        let gone = self.change(conn, ViewerRole::Gone);
        self.list.remove(&conn);
        if self.driver == Some(conn) {
            self.driver = None;
        }
        vec![gone]
    }

    /// Whether `conn` may send `cmd` (the drive/observe commands are handled apart).
    pub fn may(&self, conn: ConnId, cmd: &RuntimeCommand) -> Result<(), String> {
        if cmd.read_only() || self.driver == Some(conn) {
            return Ok(());
        }
        Err(match self.driver {
            Some(d) => format!(
                "you are observing: {} drives (take over to act)",
                self.describe(d)
            ),
            None => "you are observing: ask to drive first (D in the console, {\"cmd\":\"drive\"})"
                .into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::ActorId;

    fn roles(v: &Viewers) -> Vec<(ConnId, ViewerRole)> {
        v.list.iter().map(|(c, v)| (*c, v.role)).collect()
    }

    #[test]
    fn first_driver_drives_second_is_an_observer_until_it_takes_over() {
        let mut v = Viewers::default();
        let a = v
            .attach(1, "a".into(), Some(10), true, false, true)
            .expect("a");
        assert_eq!(a.changes.len(), 1);
        assert_eq!(a.changes[0].role, ViewerRole::Driver);
        assert_eq!(a.note, None);
        let b = v.attach(2, "b".into(), None, true, false, true).expect("b");
        assert_eq!(b.changes[0].role, ViewerRole::Observer);
        assert!(
            b.note
                .as_deref()
                .is_some_and(|n| n.contains("viewer 1 (a) drives"))
        );
        assert_eq!(v.driver(), Some(1));
        let moved = v.drive(2, true).expect("take over");
        assert_eq!(
            moved.iter().map(|c| (c.conn, c.role)).collect::<Vec<_>>(),
            vec![(1, ViewerRole::Observer), (2, ViewerRole::Driver)]
        );
        assert_eq!(
            roles(&v),
            vec![(1, ViewerRole::Observer), (2, ViewerRole::Driver)]
        );
    }

    #[test]
    fn observers_may_only_read_and_the_driver_may_do_anything() {
        let mut v = Viewers::default();
        v.attach(1, "a".into(), None, false, false, true)
            .expect("a");
        let dump = RuntimeCommand::Dump { actor: ActorId(1) };
        let input = RuntimeCommand::Input { data: "c\n".into() };
        assert!(v.may(1, &dump).is_ok());
        assert!(
            v.may(1, &input)
                .expect_err("observer")
                .contains("ask to drive")
        );
        v.drive(1, false).expect("nobody drives");
        assert!(v.may(1, &input).is_ok());
        assert!(v.may(1, &RuntimeCommand::Quit).is_ok());
        v.attach(2, "b".into(), None, false, false, true)
            .expect("b");
        assert!(
            v.may(2, &RuntimeCommand::ForceRelease)
                .expect_err("b")
                .contains("viewer 1 (a) drives")
        );
    }

    #[test]
    fn the_driver_leaving_or_observing_frees_driving() {
        let mut v = Viewers::default();
        v.attach(1, "a".into(), None, true, false, true).expect("a");
        v.attach(2, "b".into(), None, false, false, true)
            .expect("b");
        assert_eq!(v.observe(2), Vec::new(), "only the driver can give it up");
        assert_eq!(v.observe(1)[0].role, ViewerRole::Observer);
        assert_eq!(v.driver(), None);
        v.drive(2, false).expect("free");
        let gone = v.detach(2);
        assert_eq!(gone[0].role, ViewerRole::Gone);
        assert_eq!(v.driver(), None);
        assert!(v.detach(2).is_empty(), "twice is nothing");
        assert!(v.get(1).is_some() && v.get(2).is_none());
    }

    #[test]
    fn the_driver_hands_over_to_a_named_viewer_only() {
        let mut v = Viewers::default();
        v.attach(1, "a".into(), None, true, false, true).expect("a");
        v.attach(2, "b".into(), None, false, false, true)
            .expect("b");
        v.attach(3, "o".into(), None, false, false, false)
            .expect("o");
        assert!(v.hand_over(2, 1).is_err(), "only the driver hands over");
        assert!(v.hand_over(1, 9).is_err(), "to someone attached");
        assert!(v.hand_over(1, 3).is_err(), "not to an observer's ticket");
        let moved = v.hand_over(1, 2).expect("hand over");
        assert_eq!(
            moved.iter().map(|c| (c.conn, c.role)).collect::<Vec<_>>(),
            vec![(1, ViewerRole::Observer), (2, ViewerRole::Driver)]
        );
    }

    #[test]
    fn attach_is_bounded_and_once_per_connection() {
        let mut v = Viewers::default();
        for c in 0..MAX_VIEWERS as u64 {
            v.attach(c, format!("v{c}"), None, false, false, true)
                .expect("room");
        }
        assert!(v.attach(999, "x".into(), None, false, false, true).is_err());
        assert!(
            v.attach(0, "again".into(), None, false, false, true)
                .expect_err("twice")
                .contains("twice")
        );
    }
}

#[cfg(test)]
mod ticket_tests {
    use super::*;

    #[test]
    fn an_observer_ticket_never_drives() {
        let mut v = Viewers::default();
        let a = v
            .attach(1, "o".into(), None, true, true, false)
            .expect("attach");
        assert!(a.note.is_some_and(|n| n.contains("observer's ticket")));
        assert!(v.drive(1, true).is_err());
        assert_eq!(v.driver(), None);
    }
}
