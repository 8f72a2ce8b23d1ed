//! The files a test platform needs (server PKI, an app-keys file) and its config text. Starting
//! it is the platform crate's business (`edgeway_platform::start`); this only prepares input,
//! so the sidecar's tunnel tests and the platform's own tests share one set-up.

use std::path::PathBuf;
use std::sync::Arc;

use crate::pki::{client_config, Ca};

/// The app key every test platform accepts.
pub const APP_KEY: &str = "d0a1e2f3-4455-6677-8899-aabbccddeeff";
/// The name that app key is listed under.
pub const APP_KEY_NAME: &str = "plant-a";

/// Server PKI, keys file and config text for one platform.
pub struct Setup {
    /// The CA that issued the platform's server certificate.
    pub ca: Ca,
    /// The directory holding the files.
    pub dir: PathBuf,
    /// Server certificate file.
    pub cert: PathBuf,
    /// Server key file.
    pub key: PathBuf,
    /// App-keys file: [`APP_KEY`] named [`APP_KEY_NAME`], and one unnamed key.
    pub keys_file: PathBuf,
}

impl Setup {
    /// Writes the files into `temp_dir(name)`.
    pub fn new(name: &str) -> Setup {
        let ca = Ca::new("Edgeway Platform Test CA");
        let dir = crate::temp_dir(name);
        let (cert, key) = ca.server().write(&dir, "server");
        let keys_file = dir.join("app-keys");
        std::fs::write(
            &keys_file,
            format!("# test keys\n{APP_KEY_NAME}:{APP_KEY}\nother-key-without-name\n"),
        )
        .unwrap();
        Setup {
            ca,
            dir,
            cert,
            key,
            keys_file,
        }
    }

    /// Config YAML for app-key auth on loopback with ephemeral ports, plus `extra` top-level lines.
    pub fn yaml(&self, extra: &str) -> String {
        format!(
            "listen: 127.0.0.1:0\n\
             tls:\n  cert: {}\n  key: {}\n  clientAuth: off\n  watch: false\n\
             auth:\n  appKeysFile: {}\n\
             rest:\n  listen: 127.0.0.1:0\n\
             admin:\n  listen: 127.0.0.1:0\n\
             {extra}",
            self.cert.display(),
            self.key.display(),
            self.keys_file.display()
        )
    }

    /// A client config trusting this platform, without a client certificate.
    pub fn client(&self) -> Arc<rustls::ClientConfig> {
        client_config(self.ca.roots(), None)
    }
}
