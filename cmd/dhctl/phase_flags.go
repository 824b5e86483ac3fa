package main

import (
	"github.com/spf13/pflag"

	"github.com/dhctl-dev/dhctl/internal/session"
)

// addPhaseFlags adds the phase runner's flags to a command that runs phases.
func addPhaseFlags(f *pflag.FlagSet, o *session.PhaseOptions) {
	f.StringArrayVar(&o.Skip, "skip-phase", nil, "skip this phase (name or path such as install/cni; repeatable)")
	f.StringArrayVar(&o.Only, "only-phase", nil, "run only this phase (repeatable); finished phases named here run again")
	f.BoolVar(&o.DryRun, "dry-run", false, "show what each phase would do without changing anything")
}
