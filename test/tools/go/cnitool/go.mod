// Pins the cnitool the e2e tier drives nodepath-cni with (scripts/lib/gotools.sh builds it).
module nodepath.local/tools/cnitool

go 1.21

require github.com/containernetworking/cni v1.3.0
