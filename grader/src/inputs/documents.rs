//! Reading input files into documents: multi-document YAML, JSON, `List` kinds, stdin, directories.
