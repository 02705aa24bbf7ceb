//! Command-line flags read exactly as the Kubernetes components parse them (spf13/pflag).
