// Package config holds Embark's configuration: a JSON file (embark.json)
// in the data directory, written with working defaults by `embark init` or
// the first `embark serve`, and re-read at every start.
package config
