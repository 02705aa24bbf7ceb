//! EncryptionConfiguration (`apiserver.config.k8s.io/v1`): parsing and judging the providers.
