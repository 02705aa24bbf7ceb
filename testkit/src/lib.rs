//! Test support for hardlab: real control planes, Docker and databases.
