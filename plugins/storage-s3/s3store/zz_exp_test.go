package s3store_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

func TestZZExp(t *testing.T) {
	c := s3.New(s3.Options{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("minioadmin", "minioadmin", ""), BaseEndpoint: aws.String("http://127.0.0.1:19123"), UsePathStyle: true})
	ctx := context.Background()
	c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String("exp")})
	for _, k := range []string{"a", "a/b", "a/b/c", "c.d", "c.d/e", "z/y"} {
		_, err := c.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String("exp"), Key: aws.String(k), Body: strings.NewReader("x" + k)})
		fmt.Println("put", k, err)
	}
	for _, k := range []string{"a", "a/b", "a/b/c"} {
		_, err := c.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String("exp"), Key: aws.String(k)})
		fmt.Println("head", k, err)
	}
	for _, p := range []string{"", "a/", "a/b/"} {
		out, err := c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String("exp"), Prefix: aws.String(p)})
		if err != nil {
			fmt.Println(err)
			continue
		}
		var ks []string
		for _, o := range out.Contents {
			ks = append(ks, *o.Key)
		}
		fmt.Println("list", p, ks)
	}
}
