package security_test

import (
	"os"
	"testing"

	"github.com/imcluster/imcluster/test/harness"
)

func TestMain(m *testing.M) { os.Exit(harness.Main(m)) }
