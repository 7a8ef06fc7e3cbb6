from compiler.launch import main

main()
