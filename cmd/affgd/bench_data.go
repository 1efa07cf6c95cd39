package main

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/affgd/affgd/data"
	"github.com/affgd/affgd/torch"
)

// benchDataCommand is `affgd bench data`: the training loader's throughput (decode, sample,
// resize, crop, flip, normalise, batch) against a torch.utils.data.DataLoader with the released
// transforms over the same files, with one worker and with all cores.
func benchDataCommand() *cli.Command {
	return &cli.Command{
		Name:  "data",
		Usage: "training images/s decoded and augmented by our loader vs a PyTorch DataLoader with the released transforms, 1 worker and all cores",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "threads", Value: 1, Usage: "intra-op threads, for both sides (loaders parallelise over workers)"},
			&cli.StringFlag{Name: "python", EnvVars: []string{"AFFGD_PYTHON"}, Usage: "the venv's python, for the PyTorch side"},
			&cli.StringFlag{Name: "root", Usage: "an AGD20K root to read (its Seen split); default: a synthetic set of 640×480 JPEGs in a temporary folder"},
			&cli.IntFlag{Name: "batches", Value: 8, Usage: "timed batches of 8 samples (32 images) per run"},
			&cli.IntFlag{Name: "workers", Value: runtime.NumCPU(), Usage: "the 'all cores' worker count"},
			&cli.StringFlag{Name: "device", Value: "cpu", Usage: "cpu, cuda or cuda:N, checked to exist; the loader decodes and batches on the CPU (the trainer copies each batch to the device at its step)"},
		},
		Action: benchData,
	}
}

// writeSyntheticAGD writes a Seen split with 4 action/object folders of 16 exocentric and 4
// egocentric 640×480 JPEGs (quality 90) with smooth content, and returns the dataset root.
func writeSyntheticAGD(dir string) (string, error) {
	m := image.NewRGBA(image.Rect(0, 0, 640, 480))
	n := 0
	for _, ao := range [][2]string{{"hold", "cup"}, {"cut", "knife"}, {"drink_with", "bottle"}, {"open", "book"}} {
		for _, kind := range []string{"exocentric", "egocentric"} {
			count := 16
			if kind == "egocentric" {
				count = 4
			}
			d := filepath.Join(dir, "Seen", "trainset", kind, ao[0], ao[1])
			if err := os.MkdirAll(d, 0o755); err != nil {
				return "", err
			}
			for i := 0; i < count; i++ {
				n++
				for y := 0; y < 480; y++ {
					for x := 0; x < 640; x++ {
						m.SetRGBA(x, y, color.RGBA{uint8(x/3 + n*11), uint8(y/2 + n*7), uint8((x+y)/5 + n*3), 255})
					}
				}
				var b bytes.Buffer
				if err := jpeg.Encode(&b, m, &jpeg.Options{Quality: 90}); err != nil {
					return "", err
				}
				if err := os.WriteFile(filepath.Join(d, fmt.Sprintf("%s_%06d.jpg", ao[1], i)), b.Bytes(), 0o644); err != nil {
					return "", err
				}
			}
		}
	}
	return dir, nil
}

// timeLoader returns seconds per image for batches batches (after one warm-up batch) of our loader.
func timeLoader(s *data.TrainSet, workers, batches int) (float64, error) {
	l, err := data.NewTrainLoader(s, data.LoaderOptions{Workers: workers, Seed: 1})
	if err != nil {
		return 0, err
	}
	defer func() { l.Close() }()
	epoch := 0
	next := func() (*data.Batch, error) {
		b, err := l.Next()
		if errors.Is(err, io.EOF) { // wrap around into the next epoch
			l.Close()
			epoch++
			if l, err = data.NewTrainLoader(s, data.LoaderOptions{Workers: workers, Seed: 1, Epoch: epoch}); err != nil {
				return nil, err
			}
			b, err = l.Next()
		}
		return b, err
	}
	b, err := next()
	if err != nil {
		return 0, err
	}
	b.Release()
	t0 := time.Now()
	images := 0
	for i := 0; i < batches; i++ {
		b, err := next()
		if err != nil {
			return 0, err
		}
		images += int(b.Exo.Size(0)*b.Exo.Size(1) + b.Ego.Size(0))
		b.Release()
	}
	return time.Since(t0).Seconds() / float64(images), nil
}

func benchData(c *cli.Context) error {
	threads, py, _, err := benchSetup(c)
	if err != nil {
		return err
	}
	root := c.String("root")
	if root == "" {
		tmp, err := os.MkdirTemp("", "affgd-bench-data-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		if root, err = writeSyntheticAGD(tmp); err != nil {
			return fmt.Errorf("bench data: writing the synthetic images: %w", err)
		}
	}
	s, err := data.OpenTrain(root, data.Seen)
	if err != nil {
		return err
	}
	batches, all := max(1, c.Int("batches")), max(1, c.Int("workers"))
	goTimes := map[string]float64{}
	for _, w := range []int{1, all} {
		if goTimes[fmt.Sprintf("workers_%d", w)], err = timeLoader(s, w, batches); err != nil {
			return err
		}
	}
	script := filepath.Join("tests", "data", "bench_data.py")
	pyTimes, err := runPython(py, script, "--root", filepath.Join(root, "Seen"), "--workers", "0", fmt.Sprint(all),
		"--batches", fmt.Sprint(batches), "--threads", fmt.Sprint(threads))
	if err != nil {
		return err
	}
	fmt.Printf("libtorch %s, %d intra-op thread(s), %d CPU(s), %d training items, %d batches of 8 samples (E=3: 32 images)\n",
		torch.Version(), threads, runtime.NumCPU(), len(s.Items), batches)
	fmt.Printf("%-26s %14s %14s %12s\n", "loader", "Go images/s", "PyTorch img/s", "speed-up")
	for _, r := range []struct {
		name     string
		goKey, p string
	}{{"1 worker (PyTorch: 0)", "workers_1", "workers_0"}, {fmt.Sprintf("%d workers", all), fmt.Sprintf("workers_%d", all), fmt.Sprintf("workers_%d", all)}} {
		g, p := goTimes[r.goKey], pyTimes[r.p]
		fmt.Printf("%-26s %14.1f %14.1f %12.2f\n", r.name, 1/g, 1/p, p/g)
	}
	return nil
}
