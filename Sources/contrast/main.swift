print("contrast")
