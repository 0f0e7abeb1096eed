package main

import "github.com/embark-iot/embark/pkg/server"

func versionString() string { return "embark " + server.Version }
