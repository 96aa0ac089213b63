// Command storage-webdav is an example cairn storage plugin: it serves
// webdav:// and webdav+http:// URIs (see package webdavstore) over
// go-plugin. Build it from this directory into a plugin directory:
//
//	go build -o ~/.cairn/plugins/storage-webdav .
//
// Run by hand it says it is a plugin and exits; cairn starts it.
package main

import (
	"github.com/cairnbackup/cairn/sdk/examples/webdav/webdavstore"
	"github.com/cairnbackup/cairn/sdk/plugin"
)

func main() {
	plugin.Serve(plugin.ServeConfig{
		Name:    "storage-webdav",
		Version: "0.1.0",
		Storage: webdavstore.Provider{},
		// The IfNotExists writes of locks and LATEST pointers work on
		// any server that honours Overwrite: F (see package webdavstore).
		Capabilities: []string{"conditional-write"},
	})
}
