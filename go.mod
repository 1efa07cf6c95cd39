module github.com/affgd/affgd

go 1.26
