// Command locality is cairn's default locality plugin: the Matcher and the
// "default" and "strict" execution policies of sdk/locality/rules, served
// over go-plugin. The host starts it; run by hand, it says it is a plugin
// and exits.
package main

import (
	"github.com/cairnbackup/cairn/sdk/locality"
	"github.com/cairnbackup/cairn/sdk/locality/rules"
	"github.com/cairnbackup/cairn/sdk/plugin"
)

func main() {
	plugin.Serve(plugin.ServeConfig{
		Name:     "locality",
		Version:  "0.1.0",
		Matcher:  rules.Matcher{},
		Policies: []locality.Policy{rules.Default{}, rules.Strict{}},
	})
}
