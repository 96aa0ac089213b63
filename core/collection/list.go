package collection

import (
	"context"
	"errors"
	"fmt"
	"path"
	"regexp"
	"strings"

	"github.com/cairnbackup/cairn/core/manifest"
	"github.com/cairnbackup/cairn/sdk/storage"
)

var (
	yearRE  = regexp.MustCompile(`^[0-9]{4}/$`)
	monthRE = regexp.MustCompile(`^[0-9]{2}/$`)
)

// ListBackups returns the subdirectories of the complete full backups in
// the collection (those with a BACKUP_MANIFEST), oldest first. It walks
// the YYYY/, MM/ and DD-HHMMSS.ss/ levels with delimited listings and
// checks each layer's manifest with one Stat, so it never lists a layer's
// data files or reads its manifest.
func ListBackups(ctx context.Context, s storage.Store) ([]string, error) {
	return listLayers(ctx, s, true)
}

// ListIncomplete returns the subdirectories of full backups that have no
// BACKUP_MANIFEST: running, abandoned or failed ones. It is for
// diagnostics; restore refuses such layers.
func ListIncomplete(ctx context.Context, s storage.Store) ([]string, error) {
	return listLayers(ctx, s, false)
}

func listLayers(ctx context.Context, s storage.Store, complete bool) ([]string, error) {
	var out []string
	err := walkSubdirs(ctx, s, func(subdir string) error {
		name := path.Join(subdir, manifest.ManifestName)
		_, err := s.Stat(ctx, name)
		switch {
		case err == nil:
			if complete {
				out = append(out, subdir)
			}
		case errors.Is(err, storage.ErrNotFound):
			if !complete {
				out = append(out, subdir)
			}
		default:
			return fmt.Errorf("listing backups: checking %s: %w", name, err)
		}
		return nil
	})
	return out, err
}

// walkSubdirs calls fn, in lexical (= chronological) order, for every
// directory of the collection shaped like a full backup's subdirectory.
// fn is never called from inside a List callback.
func walkSubdirs(ctx context.Context, s storage.Store, fn func(subdir string) error) error {
	years, err := listPrefixes(ctx, s, "", yearRE)
	if err != nil {
		return err
	}
	for _, y := range years {
		months, err := listPrefixes(ctx, s, y, monthRE)
		if err != nil {
			return err
		}
		for _, m := range months {
			days, err := listPrefixes(ctx, s, y+m, nil)
			if err != nil {
				return err
			}
			for _, d := range days {
				sub := strings.TrimSuffix(y+m+d, "/")
				if ValidateSubdir(sub) != nil {
					continue
				}
				if err := fn(sub); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// listPrefixes returns the common prefixes one level below prefix, relative
// to it, that match re (all when re is nil).
func listPrefixes(ctx context.Context, s storage.Store, prefix string, re *regexp.Regexp) ([]string, error) {
	var out []string
	err := s.List(ctx, storage.ListOptions{Prefix: prefix, Delimiter: "/"}, func(o storage.ObjectInfo) error {
		if !o.IsPrefix {
			return nil
		}
		rel := strings.TrimPrefix(o.Name, prefix)
		if re == nil || re.MatchString(rel) {
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing backups: listing %q: %w", prefix, err)
	}
	return out, nil
}
