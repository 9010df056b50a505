// crondiff prints robfig/cron v3's next activation times, as Kubernetes' CronJob computes them, for the
// differential test of the operator's cron parser (tests/unit/schedules/test_cron_differential.py).
//
// Input, one request per line on stdin: "<zone>\t<unix seconds>\t<count>\t<expression>". The expression is
// parsed as CronJob's controller does: cron.ParseStandard("TZ=<zone> " + expression).
// Output, one line per request: "ERR" when the expression does not parse, else <count> unix times separated by
// spaces, each the Next of the one before (0: robfig's zero time, no activation within five years).
package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for in.Scan() {
		parts := strings.SplitN(in.Text(), "\t", 4)
		if len(parts) != 4 {
			fmt.Fprintln(out, "ERR")
			continue
		}
		unix, _ := strconv.ParseInt(parts[1], 10, 64)
		count, _ := strconv.Atoi(parts[2])
		schedule, err := cron.ParseStandard("TZ=" + parts[0] + " " + parts[3])
		if err != nil {
			fmt.Fprintln(out, "ERR")
			continue
		}
		t := time.Unix(unix, 0).UTC()
		times := make([]string, 0, count)
		for i := 0; i < count; i++ {
			t = schedule.Next(t)
			if t.IsZero() {
				times = append(times, "0")
				break
			}
			times = append(times, strconv.FormatInt(t.Unix(), 10))
		}
		fmt.Fprintln(out, strings.Join(times, " "))
	}
}
