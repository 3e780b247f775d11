//! Who may log in through the gate, with which client id, and what each
//! login may publish and subscribe to (pure: functions of the CONNECT, the
//! topic and the [`Access`] in force).
//!
//! Client ids are part of the decision because the broker keys sessions by
//! them: a login that takes another's client id takes over its session —
//! its subscriptions, its queued messages, its connection. So a node's
//! client id is its username `{site}.{node}`; an anonymous login (where
//! still allowed) must use the client id `{site}.{node}` of a node allowed
//! to log in anonymously and is that node, and nothing else; and the
//! gateway's own client id (`mqtt.client_id`, which it uses on the broker
//! behind the gate) is reserved: no login through the gate may take it.

use crate::config::Config;
use crate::store::registry::Registry;
use rumqttc::mqttbytes::v4::{Connect, ConnectReturnCode};
use std::collections::{HashMap, HashSet};
use wire::{NodeId, SiteId, Topic, TopicKind};

/// Who a connection is, once its CONNECT is accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The configured `mqtt.username`/`mqtt.password`: everything.
    Gateway,
    /// A node, and the hash it logged in with (empty: logged in without
    /// credentials, as a node allowed to log in anonymously, or with a
    /// certificate), or the fingerprint of the node certificate it
    /// presented over TLS.
    Node {
        site: String,
        node: String,
        hash: String,
        cert: Option<String>,
    },
}

impl Principal {
    /// How logs name it.
    pub fn label(&self) -> String {
        match self {
            Principal::Gateway => "gateway".into(),
            Principal::Node { site, node, .. } => {
                crate::ingest::mosquitto::node_username(site, node)
            }
        }
    }
}

/// Everything the gate needs to decide: built from the configuration in
/// force and the registry, replaced whenever either changes.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// The gateway's own login (username, password), if configured.
    pub gateway: Option<(String, String)>,
    /// Client ids no login through the gate may take: the gateway's own.
    pub reserved_client_ids: HashSet<String>,
    /// Node credentials by username: (site, node, `$7$` hash); revoked ones absent.
    pub nodes: HashMap<String, (String, String, String)>,
    /// Usernames that exist but are revoked (refused with "not authorised").
    pub revoked: HashSet<String>,
    /// Nodes that may log in anonymously.
    pub anonymous: HashSet<(String, String)>,
    /// Node certificates in force, by SHA-256 of the DER: (site, node).
    pub certs: HashMap<String, (String, String)>,
    /// Certificates of revoked nodes (refused with their own reason).
    pub revoked_certs: HashSet<String>,
    /// Nodes that have credentials (even revoked): never anonymous.
    pub anonymous_blocked: HashSet<(String, String)>,
    /// Any node without credentials may log in anonymously
    /// (`accept_unknown_nodes` with anonymous logins on).
    pub anonymous_any: bool,
}

/// `{site}.{node}` of valid ids, split.
fn node_of(client_id: &str) -> Option<(&str, &str)> {
    let (site, node) = client_id.split_once('.')?;
    (SiteId::new(site).is_ok() && NodeId::new(node).is_ok()).then_some((site, node))
}

impl Access {
    /// From the configuration in force (file + registry) and the registry.
    pub fn build(
        config: &Config,
        reg: &Registry,
        gateway: Option<(String, String)>,
        anonymous_config_nodes: bool,
    ) -> Access {
        let mut a = Access {
            gateway,
            reserved_client_ids: HashSet::from([config.mqtt.client_id.clone()]),
            anonymous_any: anonymous_config_nodes && config.accept_unknown_nodes,
            ..Default::default()
        };
        let mut with_credentials = HashSet::new();
        for c in &reg.credentials {
            with_credentials.insert((c.site.clone(), c.node.clone()));
            if c.revoked_at.is_some() || c.password_hash.is_empty() {
                a.revoked.insert(c.username.clone());
            } else {
                a.nodes.insert(
                    c.username.clone(),
                    (c.site.clone(), c.node.clone(), c.password_hash.clone()),
                );
            }
        }
        if anonymous_config_nodes {
            for s in &config.sites {
                for n in &s.nodes {
                    let key = (s.id.clone(), n.id.clone());
                    if !with_credentials.contains(&key) {
                        a.anonymous.insert(key);
                    }
                }
            }
        }
        for cert in &reg.certificates {
            let revoked =
                reg.credentials
                    .iter()
                    .any(|c| c.username == cert.username && c.revoked_at.is_some())
                    || reg.nodes.iter().any(|n| {
                        n.site == cert.site && n.id == cert.node && n.revoked_at.is_some()
                    });
            if revoked {
                a.revoked_certs.insert(cert.sha256.clone());
            } else {
                a.certs
                    .insert(cert.sha256.clone(), (cert.site.clone(), cert.node.clone()));
            }
        }
        // Nodes with credentials, even revoked, are never anonymous.
        a.anonymous_blocked = with_credentials;
        a
    }

    /// Checks a CONNECT that came over TLS with a client certificate of
    /// the node CA (fingerprint `fp`): that node, without a password, if
    /// the registry knows the certificate and the CONNECT names that node
    /// (client id `{site}.{node}`; the username, if any, the same).
    pub fn authenticate_cert(
        &self,
        c: &Connect,
        fp: &str,
    ) -> Result<Principal, (ConnectReturnCode, super::TlsRefused)> {
        use super::TlsRefused;
        let refused = |why| Err((ConnectReturnCode::NotAuthorized, why));
        if self.revoked_certs.contains(fp) {
            return refused(TlsRefused::Revoked);
        }
        let Some((site, node)) = self.certs.get(fp) else {
            return refused(TlsRefused::UnknownCertificate);
        };
        let username = crate::ingest::mosquitto::node_username(site, node);
        let named_other = c
            .login
            .as_ref()
            .is_some_and(|l| !l.username.is_empty() && l.username != username);
        if c.client_id != username || named_other || self.reserved_client_ids.contains(&c.client_id)
        {
            return refused(TlsRefused::Identity);
        }
        Ok(Principal::Node {
            site: site.clone(),
            node: node.clone(),
            hash: String::new(),
            cert: Some(fp.to_string()),
        })
    }

    /// Checks a CONNECT: who it is, or the CONNACK code refusing it
    /// (4 bad username or password, 5 not authorised).
    pub fn authenticate(&self, c: &Connect) -> Result<Principal, ConnectReturnCode> {
        if self.reserved_client_ids.contains(&c.client_id) {
            return Err(ConnectReturnCode::NotAuthorized);
        }
        let Some(login) = c.login.as_ref().filter(|l| !l.username.is_empty()) else {
            if c.login.is_some() {
                // A password without a username.
                return Err(ConnectReturnCode::BadUserNamePassword);
            }
            // No username: only as a node allowed to log in anonymously,
            // under that node's client id.
            return self
                .anonymous_node(&c.client_id)
                .ok_or(ConnectReturnCode::NotAuthorized);
        };
        if let Some((user, password)) = &self.gateway {
            if &login.username == user {
                return if crate::auth::credentials::constant_time_eq(
                    login.password.as_bytes(),
                    password.as_bytes(),
                ) {
                    Ok(Principal::Gateway)
                } else {
                    Err(ConnectReturnCode::BadUserNamePassword)
                };
            }
        }
        if self.revoked.contains(&login.username) {
            return Err(ConnectReturnCode::NotAuthorized);
        }
        let Some((site, node, hash)) = self.nodes.get(&login.username) else {
            // A node without credentials that sends its username anyway
            // (the firmware always does): as anonymous, itself only.
            if c.client_id == login.username {
                if let Some(p) = self.anonymous_node(&c.client_id) {
                    return Ok(p);
                }
            }
            // An unknown username costs what a wrong password does, so the
            // time to CONNACK does not tell which usernames exist.
            crate::auth::credentials::spend_verify(&login.password);
            return Err(ConnectReturnCode::BadUserNamePassword);
        };
        if !crate::auth::credentials::verify(&login.password, hash) {
            return Err(ConnectReturnCode::BadUserNamePassword);
        }
        if c.client_id != login.username {
            return Err(ConnectReturnCode::NotAuthorized);
        }
        Ok(Principal::Node {
            site: site.clone(),
            node: node.clone(),
            hash: hash.clone(),
            cert: None,
        })
    }

    /// The node an anonymous login with `client_id` is, if it may be one.
    fn anonymous_node(&self, client_id: &str) -> Option<Principal> {
        let (site, node) = node_of(client_id)?;
        self.anonymous_may(site, node).then(|| Principal::Node {
            site: site.to_string(),
            node: node.to_string(),
            hash: String::new(),
            cert: None,
        })
    }

    /// Whether a logged-in connection may stay: a node's credential must
    /// still be the one it logged in with.
    pub fn still_valid(&self, p: &Principal) -> bool {
        match p {
            // With a certificate: while it is the node's, not revoked.
            Principal::Node {
                site,
                node,
                cert: Some(fp),
                ..
            } => self
                .certs
                .get(fp)
                .is_some_and(|(s, n)| s == site && n == node),
            // Logged in without credentials: valid until it is given some
            // or anonymous logins are switched off.
            Principal::Node {
                site, node, hash, ..
            } if hash.is_empty() => self.anonymous_may(site, node),
            Principal::Node {
                site, node, hash, ..
            } => self
                .nodes
                .get(&crate::ingest::mosquitto::node_username(site, node))
                .is_some_and(|(_, _, h)| h == hash),
            Principal::Gateway => true,
        }
    }

    fn anonymous_may(&self, site: &str, node: &str) -> bool {
        let key = (site.to_string(), node.to_string());
        self.anonymous.contains(&key)
            || (self.anonymous_any && !self.anonymous_blocked.contains(&key))
    }

    /// Whether `p` may publish to `topic`.
    pub fn may_publish(&self, p: &Principal, topic: &str) -> bool {
        match p {
            Principal::Gateway => true,
            Principal::Node { site, node, .. } => Topic::parse(topic).is_ok_and(|t| {
                t.kind != TopicKind::Cmd && t.site.as_str() == site && t.node.as_str() == node
            }),
        }
    }

    /// Whether `p` may subscribe to `filter`: a node only to its own `cmd`.
    pub fn may_subscribe(&self, p: &Principal, filter: &str) -> bool {
        match p {
            Principal::Gateway => true,
            Principal::Node { site, node, .. } => Topic::parse(filter).is_ok_and(|t| {
                t.kind == TopicKind::Cmd && t.site.as_str() == site && t.node.as_str() == node
            }),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::registry::{Credential, Registry};
    use rumqttc::mqttbytes::v4::Login;

    pub(crate) fn connect(client_id: &str, login: Option<(&str, &str)>) -> Connect {
        let mut c = Connect::new(client_id);
        c.login = login.map(|(u, p)| Login::new(u, p));
        c
    }

    /// Site home_a: n01 (file, no credentials), n02 (credentials), n03
    /// (revoked); the gateway's client id `fire-gateway`.
    pub(crate) fn access(anonymous: bool) -> Access {
        let config = Config::from_toml(
            "[mqtt]\nclient_id = \"fire-gateway\"\n\
             [[sites]]\nid = \"home_a\"\nname = \"甲\"\n\
             [[sites.nodes]]\nid = \"n01\"\n[[sites.nodes]]\nid = \"n02\"\n[[sites.nodes]]\nid = \"n03\"\n",
        )
        .unwrap();
        let cred = |node: &str, pw: &str, revoked: bool| Credential {
            username: format!("home_a.{node}"),
            site: "home_a".into(),
            node: node.into(),
            password_hash: crate::auth::credentials::hash_with(pw, b"saltsaltsalt", 101),
            created_at: 1,
            rotated_at: 1,
            revoked_at: revoked.then_some(2),
        };
        let reg = Registry {
            version: 1,
            credentials: vec![cred("n02", "pw-n02", false), cred("n03", "pw-n03", true)],
            ..Default::default()
        };
        Access::build(
            &config,
            &reg,
            Some(("gw".into(), "gw-secret".into())),
            anonymous,
        )
    }

    fn anon_n01() -> Principal {
        Principal::Node {
            site: "home_a".into(),
            node: "n01".into(),
            hash: String::new(),
            cert: None,
        }
    }

    #[test]
    fn connect_checks() {
        let a = access(true);
        let n02 = a
            .authenticate(&connect("home_a.n02", Some(("home_a.n02", "pw-n02"))))
            .unwrap();
        assert!(matches!(&n02, Principal::Node { node, .. } if node == "n02"));
        use ConnectReturnCode::*;
        for (c, code) in [
            (
                connect("home_a.n02", Some(("home_a.n02", "wrong"))),
                BadUserNamePassword,
            ),
            (
                connect("other", Some(("home_a.n02", "pw-n02"))),
                NotAuthorized,
            ),
            (
                connect("home_a.n03", Some(("home_a.n03", "pw-n03"))),
                NotAuthorized,
            ),
            (connect("x", Some(("nobody", "pw"))), BadUserNamePassword),
            (connect("gw", Some(("gw", "nope"))), BadUserNamePassword),
            (
                connect("x", Some(("", "only-a-password"))),
                BadUserNamePassword,
            ),
        ] {
            assert_eq!(a.authenticate(&c), Err(code), "{c:?}");
        }
        assert_eq!(
            a.authenticate(&connect("gw-client", Some(("gw", "gw-secret")))),
            Ok(Principal::Gateway)
        );
        // A node of the file without credentials, sending its username as
        // the firmware does: itself only, while anonymous logins are allowed.
        let n01 = a
            .authenticate(&connect("home_a.n01", Some(("home_a.n01", "whatever"))))
            .unwrap();
        assert_eq!(n01, anon_n01());
        assert!(a.may_publish(&n01, "fire/v1/home_a/n01/telemetry"));
        assert!(!a.may_publish(&n01, "fire/v1/home_a/n02/telemetry"));
        assert!(a.still_valid(&n01));
        let mut given_credentials = a.clone();
        given_credentials
            .anonymous
            .remove(&("home_a".to_string(), "n01".to_string()));
        assert!(!given_credentials.still_valid(&n01));
        assert_eq!(
            access(false).authenticate(&connect("home_a.n01", Some(("home_a.n01", "x")))),
            Err(BadUserNamePassword)
        );
    }

    /// The takeover of issue 14: no username, the gateway's client id (or
    /// another node's), to steal its session.
    #[test]
    fn anonymous_logins_are_one_anonymous_node_under_its_own_client_id() {
        use ConnectReturnCode::*;
        let a = access(true);
        assert_eq!(a.authenticate(&connect("home_a.n01", None)), Ok(anon_n01()));
        for client_id in [
            "fire-gateway", // the gateway's own session
            "home_a.n02",   // a node with credentials
            "home_a.n03",   // a revoked node
            "home_a.n09",   // not a node
            "home_b.n01",   // not a site
            "anything",
            "home_a.n01.x",
            "home_a.",
            "",
        ] {
            assert_eq!(
                a.authenticate(&connect(client_id, None)),
                Err(NotAuthorized),
                "{client_id:?}"
            );
        }
        // Anonymous logins off: nobody.
        assert_eq!(
            access(false).authenticate(&connect("home_a.n01", None)),
            Err(NotAuthorized)
        );
        // With accept_unknown_nodes too: any valid node id without
        // credentials, as that node only.
        let mut any = access(true);
        any.anonymous_any = true;
        let n09 = any.authenticate(&connect("home_a.n09", None)).unwrap();
        assert!(any.may_publish(&n09, "fire/v1/home_a/n09/telemetry"));
        assert!(!any.may_publish(&n09, "fire/v1/home_a/n01/telemetry"));
        assert!(any.still_valid(&n09));
        assert_eq!(
            any.authenticate(&connect("home_a.n02", None)),
            Err(NotAuthorized)
        );
        assert_eq!(
            any.authenticate(&connect("fire-gateway", None)),
            Err(NotAuthorized)
        );
    }

    #[test]
    fn the_gateway_client_id_is_reserved_for_every_login() {
        use ConnectReturnCode::*;
        let a = access(true);
        for login in [
            None,
            Some(("home_a.n02", "pw-n02")),
            Some(("home_a.n01", "x")),
            Some(("gw", "gw-secret")),
        ] {
            assert_eq!(
                a.authenticate(&connect("fire-gateway", login)),
                Err(NotAuthorized),
                "{login:?}"
            );
        }
    }

    #[test]
    fn a_node_publishes_only_under_its_own_prefix() {
        let a = access(true);
        let n02 = Principal::Node {
            site: "home_a".into(),
            node: "n02".into(),
            hash: String::new(),
            cert: None,
        };
        for ok in [
            "fire/v1/home_a/n02/telemetry",
            "fire/v1/home_a/n02/status",
            "fire/v1/home_a/n02/event",
            "fire/v1/home_a/n02/cmd/ack",
        ] {
            assert!(a.may_publish(&n02, ok), "{ok}");
        }
        for no in [
            "fire/v1/home_a/n01/telemetry",
            "fire/v1/home_b/n02/telemetry",
            "fire/v1/home_a/n02/cmd",
            "fire/v1/home_a/n02/telemetry/x",
            "fire/v1/home_a/+/telemetry",
            "fire/v1/home_a/n02",
            "other/topic",
            "",
        ] {
            assert!(!a.may_publish(&n02, no), "{no}");
        }
        assert!(a.may_subscribe(&n02, "fire/v1/home_a/n02/cmd"));
        for no in [
            "fire/v1/home_a/n01/cmd",
            "fire/v1/home_a/+/cmd",
            "fire/v1/#",
            "#",
            "fire/v1/home_a/n02/telemetry",
        ] {
            assert!(!a.may_subscribe(&n02, no), "{no}");
        }
        let n01 = anon_n01();
        assert!(a.may_subscribe(&n01, "fire/v1/home_a/n01/cmd"));
        assert!(!a.may_subscribe(&n01, "fire/v1/home_a/n02/cmd"));
        assert!(a.may_publish(&Principal::Gateway, "fire/v1/home_a/n01/cmd"));
        assert!(a.may_subscribe(&Principal::Gateway, "fire/v1/#"));
    }

    #[test]
    fn a_node_certificate_is_its_node_only_while_the_registry_says_so() {
        use crate::ingest::gate::TlsRefused;
        use crate::store::registry::NodeCertificate;
        let config = Config::from_toml(
            "[mqtt]\nclient_id = \"fire-gateway\"\n\
             [[sites]]\nid = \"home_a\"\nname = \"甲\"\n\
             [[sites.nodes]]\nid = \"n01\"\n[[sites.nodes]]\nid = \"n02\"\n",
        )
        .unwrap();
        let cert = |node: &str, fp: &str| NodeCertificate {
            username: format!("home_a.{node}"),
            site: "home_a".into(),
            node: node.into(),
            sha256: fp.into(),
            serial: "01".into(),
            not_after: 2,
            issued_at: 1,
        };
        let cred = |node: &str, revoked: bool| Credential {
            username: format!("home_a.{node}"),
            site: "home_a".into(),
            node: node.into(),
            password_hash: crate::auth::credentials::hash_with("pw", b"saltsaltsalt", 101),
            created_at: 1,
            rotated_at: 1,
            revoked_at: revoked.then_some(2),
        };
        let mut reg = Registry {
            version: 1,
            credentials: vec![cred("n01", false), cred("n02", true)],
            certificates: vec![cert("n01", "aa"), cert("n02", "bb")],
            ..Default::default()
        };
        let a = Access::build(&config, &reg, None, false);
        use ConnectReturnCode::NotAuthorized;
        let p = a
            .authenticate_cert(&connect("home_a.n01", None), "aa")
            .unwrap();
        assert!(a.may_publish(&p, "fire/v1/home_a/n01/telemetry"));
        assert!(!a.may_publish(&p, "fire/v1/home_a/n02/telemetry"));
        assert!(a.may_subscribe(&p, "fire/v1/home_a/n01/cmd"));
        assert!(!a.may_subscribe(&p, "fire/v1/home_a/n02/cmd"));
        assert!(a.still_valid(&p));
        // The username, if sent, must be the certificate's; no password needed.
        assert!(a
            .authenticate_cert(&connect("home_a.n01", Some(("home_a.n01", ""))), "aa")
            .is_ok());
        for (c, fp, why) in [
            (connect("home_a.n02", None), "aa", TlsRefused::Identity),
            (
                connect("home_a.n01", Some(("home_a.n02", "x"))),
                "aa",
                TlsRefused::Identity,
            ),
            (connect("fire-gateway", None), "aa", TlsRefused::Identity),
            (connect("home_a.n02", None), "bb", TlsRefused::Revoked),
            (
                connect("home_a.n01", None),
                "cc",
                TlsRefused::UnknownCertificate,
            ),
        ] {
            assert_eq!(
                a.authenticate_cert(&c, fp),
                Err((NotAuthorized, why)),
                "{c:?} {fp}"
            );
        }
        // A new certificate supersedes the old: the session on it ends.
        reg.certificates[0].sha256 = "dd".into();
        assert!(!Access::build(&config, &reg, None, false).still_valid(&p));
        // Revoking the node ends it too; a password rotation does not.
        reg.certificates[0].sha256 = "aa".into();
        reg.credentials[0].revoked_at = Some(3);
        assert!(!Access::build(&config, &reg, None, false).still_valid(&p));
        reg.credentials[0].revoked_at = None;
        reg.credentials[0].password_hash =
            crate::auth::credentials::hash_with("new", b"saltsaltsalt", 101);
        assert!(Access::build(&config, &reg, None, false).still_valid(&p));
    }

    #[test]
    fn a_rotated_or_revoked_credential_invalidates_its_connection() {
        let a = access(true);
        let p = a
            .authenticate(&connect("home_a.n02", Some(("home_a.n02", "pw-n02"))))
            .unwrap();
        assert!(a.still_valid(&p));
        let mut rotated = a.clone();
        rotated.nodes.get_mut("home_a.n02").unwrap().2 =
            crate::auth::credentials::hash_with("new", b"saltsaltsalt", 101);
        assert!(!rotated.still_valid(&p));
        let mut revoked = a.clone();
        revoked.nodes.remove("home_a.n02");
        assert!(!revoked.still_valid(&p));
    }
}
