//! The control plane's certificates, laid out as kubeadm does under `pki/`. rcgen makes X.509 v3
//! certificates, which rustls requires (it refuses v1).

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};

use crate::{Error, Result};

/// A certificate authority that can still sign (for tests that need TLS peers of their own).
pub struct Authority {
    pub cert_pem: String,
    key: KeyPair,
}

impl Authority {
    pub fn new(common_name: &str) -> Result<Self> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let cert_pem = params.self_signed(&key)?.pem();
        Ok(Self { cert_pem, key })
    }

    /// A leaf certificate: `(cert_pem, key_pem)`. `organizations` become the Kubernetes groups of a
    /// client certificate; `hosts` its subject alternative names.
    pub fn issue(
        &self,
        common_name: &str,
        organizations: &[&str],
        hosts: &[&str],
        usages: &[ExtendedKeyUsagePurpose],
    ) -> Result<(String, String)> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(
            hosts
                .iter()
                .map(|host| (*host).to_owned())
                .collect::<Vec<_>>(),
        )?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        for organization in organizations {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *organization);
        }
        params.extended_key_usages = usages.to_vec();
        let issuer = Issuer::from_ca_cert_pem(&self.cert_pem, &self.key)?;
        let cert = params.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    pub(crate) fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }
}

const LOOPBACK: &[&str] = &["127.0.0.1", "localhost"];
const SERVER: &[ExtendedKeyUsagePurpose] = &[ExtendedKeyUsagePurpose::ServerAuth];
const CLIENT: &[ExtendedKeyUsagePurpose] = &[ExtendedKeyUsagePurpose::ClientAuth];
const BOTH: &[ExtendedKeyUsagePurpose] = &[
    ExtendedKeyUsagePurpose::ServerAuth,
    ExtendedKeyUsagePurpose::ClientAuth,
];

/// The cluster CA, the etcd CA, and every certificate written under `pki/`.
pub(crate) struct Pki {
    pub(crate) dir: PathBuf,
    pub(crate) cluster_ca: Authority,
    pub(crate) admin: (String, String),
}

impl Pki {
    pub(crate) fn generate(dir: &Path) -> Result<Self> {
        let cluster_ca = Authority::new("kubernetes")?;
        let etcd_ca = Authority::new("etcd-ca")?;
        let admin = cluster_ca.issue("kubernetes-admin", &["system:masters"], &[], CLIENT)?;
        let service_account = KeyPair::generate()?;
        let mut files = vec![
            ("ca.crt".to_owned(), cluster_ca.cert_pem.clone()),
            ("ca.key".to_owned(), cluster_ca.key_pem()),
            ("sa.key".to_owned(), service_account.serialize_pem()),
            ("sa.pub".to_owned(), service_account.public_key_pem()),
            ("etcd/ca.crt".to_owned(), etcd_ca.cert_pem.clone()),
            ("etcd/ca.key".to_owned(), etcd_ca.key_pem()),
        ];
        let mut pair = |name: &str, (cert, key): (String, String)| {
            files.push((format!("{name}.crt"), cert));
            files.push((format!("{name}.key"), key));
        };
        let apiserver_hosts = [LOOPBACK, &["kubernetes", "kubernetes.default"]].concat();
        pair(
            "apiserver",
            cluster_ca.issue("kube-apiserver", &[], &apiserver_hosts, SERVER)?,
        );
        pair(
            "apiserver-etcd-client",
            etcd_ca.issue("kube-apiserver-etcd-client", &[], &[], CLIENT)?,
        );
        pair("etcd/server", etcd_ca.issue("etcd", &[], LOOPBACK, BOTH)?);
        pair(
            "etcd/peer",
            etcd_ca.issue("etcd-peer", &[], LOOPBACK, BOTH)?,
        );
        pair(
            "etcd/healthcheck-client",
            etcd_ca.issue("kube-etcd-healthcheck-client", &[], &[], CLIENT)?,
        );
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        let etcd_dir = dir.join("etcd");
        std::fs::create_dir_all(&etcd_dir).map_err(io(&etcd_dir))?;
        for (name, content) in files {
            let path = dir.join(name);
            std::fs::write(&path, content).map_err(io(&path))?;
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            cluster_ca,
            admin,
        })
    }

    pub(crate) fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}
